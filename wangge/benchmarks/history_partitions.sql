-- The measure behind docs/HISTORY.md's choice of week partitions: one Baoji week of
-- check-in-shaped rows into a plain, a weekly and a monthly partitioned table, then reads.
-- Run: psql -h 127.0.0.1 -U postgres -d postgres -f wangge/benchmarks/history_partitions.sql
\timing on
DROP DATABASE IF EXISTS history_measure;
CREATE DATABASE history_measure;
\c history_measure
CREATE EXTENSION postgis;
CREATE TABLE src AS
SELECT gen_random_uuid() AS event_id,
       'W' || lpad((1 + (i % 2381))::text, 5, '0') AS worker_id,
       timestamptz '2020-09-06 16:00:00+00' + (i * interval '604800 seconds' / 1150000) AS recorded_at,
       107.15 + (i % 1000) * 1e-4 AS lon, 34.36 + (i % 997) * 1e-4 AS lat,
       '610302001001' || lpad(((i % 1138) + 1)::text, 3, '0') AS grid_code
FROM generate_series(0, 1149999) AS i;
-- shape: like checkins
CREATE TABLE t_plain (event_id uuid, worker_id varchar(6), recorded_at timestamptz, geom geometry(Point,4326), grid_code varchar(15), PRIMARY KEY (event_id, recorded_at));
CREATE TABLE t_week (LIKE t_plain) PARTITION BY RANGE (recorded_at);
ALTER TABLE t_week ADD PRIMARY KEY (event_id, recorded_at);
CREATE TABLE t_week_37 PARTITION OF t_week FOR VALUES FROM ('2020-09-06 16:00+00') TO ('2020-09-13 16:00+00');
CREATE TABLE t_week_d PARTITION OF t_week DEFAULT;
CREATE TABLE t_month (LIKE t_plain) PARTITION BY RANGE (recorded_at);
ALTER TABLE t_month ADD PRIMARY KEY (event_id, recorded_at);
CREATE TABLE t_month_09 PARTITION OF t_month FOR VALUES FROM ('2020-08-31 16:00+00') TO ('2020-09-30 16:00+00');
CREATE TABLE t_month_d PARTITION OF t_month DEFAULT;
CREATE INDEX ON t_plain USING gist (geom); CREATE INDEX ON t_plain (worker_id, recorded_at); CREATE INDEX ON t_plain (grid_code, recorded_at);
CREATE INDEX ON t_week USING gist (geom); CREATE INDEX ON t_week (worker_id, recorded_at); CREATE INDEX ON t_week (grid_code, recorded_at);
CREATE INDEX ON t_month USING gist (geom); CREATE INDEX ON t_month (worker_id, recorded_at); CREATE INDEX ON t_month (grid_code, recorded_at);
\echo insert plain
INSERT INTO t_plain SELECT event_id, worker_id, recorded_at, ST_SetSRID(ST_MakePoint(lon, lat), 4326), grid_code FROM src ON CONFLICT DO NOTHING;
\echo insert week
INSERT INTO t_week SELECT event_id, worker_id, recorded_at, ST_SetSRID(ST_MakePoint(lon, lat), 4326), grid_code FROM src ON CONFLICT DO NOTHING;
\echo insert month
INSERT INTO t_month SELECT event_id, worker_id, recorded_at, ST_SetSRID(ST_MakePoint(lon, lat), 4326), grid_code FROM src ON CONFLICT DO NOTHING;
ANALYZE t_plain; ANALYZE t_week; ANALYZE t_month;
\echo read worker week x3 each
SELECT count(*) FROM t_plain WHERE worker_id='W00042' AND recorded_at >= '2020-09-06 16:00+00' AND recorded_at < '2020-09-13 16:00+00';
SELECT count(*) FROM t_plain WHERE worker_id='W00042' AND recorded_at >= '2020-09-06 16:00+00' AND recorded_at < '2020-09-13 16:00+00';
SELECT count(*) FROM t_week WHERE worker_id='W00042' AND recorded_at >= '2020-09-06 16:00+00' AND recorded_at < '2020-09-13 16:00+00';
SELECT count(*) FROM t_week WHERE worker_id='W00042' AND recorded_at >= '2020-09-06 16:00+00' AND recorded_at < '2020-09-13 16:00+00';
SELECT count(*) FROM t_month WHERE worker_id='W00042' AND recorded_at >= '2020-09-06 16:00+00' AND recorded_at < '2020-09-13 16:00+00';
SELECT count(*) FROM t_month WHERE worker_id='W00042' AND recorded_at >= '2020-09-06 16:00+00' AND recorded_at < '2020-09-13 16:00+00';
\echo read grid-week count
SELECT count(*) FROM t_plain WHERE grid_code='610302001001042' AND recorded_at >= '2020-09-06 16:00+00' AND recorded_at < '2020-09-13 16:00+00';
SELECT count(*) FROM t_week WHERE grid_code='610302001001042' AND recorded_at >= '2020-09-06 16:00+00' AND recorded_at < '2020-09-13 16:00+00';
SELECT count(*) FROM t_month WHERE grid_code='610302001001042' AND recorded_at >= '2020-09-06 16:00+00' AND recorded_at < '2020-09-13 16:00+00';
SELECT pg_size_pretty(pg_total_relation_size('t_plain')), pg_size_pretty(pg_total_relation_size('t_week_37')), pg_size_pretty(pg_total_relation_size('t_month_09'));
\c postgres
DROP DATABASE history_measure;
