// The app's service worker: keeps the app shell so the app opens with no network at all.
// Shell files are answered from the cache at once and refreshed behind (stale while
// revalidate), so a new version shows on the next opening. API calls are never cached
// here, nor anything asked with credentials of a bearer token or answered "no-store": an
// answer for a signed-in worker must not outlive the sign-in in a cache that another
// person on the phone could read. The page keeps what it needs (IndexedDB, localStorage)
// and queues what it sends.
const CACHE = "wangge-app-shell-v2";
const SHELL = [
  "./", "app.js", "i18n.js", "outbox.js", "smallmap.js", "app.css",
  "manifest.webmanifest", "icon-192.png", "icon-512.png", "categories.json",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const scope = new URL(self.registration.scope);
  if (event.request.method !== "GET" || url.origin !== scope.origin || !url.pathname.startsWith(scope.pathname)) return;
  if (url.pathname.includes("/api/") || event.request.headers.has("Authorization")) return;
  const key = event.request.mode === "navigate" ? "./" : event.request;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const cached = await cache.match(key, { ignoreSearch: true });
    const refreshed = fetch(event.request.mode === "navigate" ? "./" : event.request, { cache: "no-cache" })
      .then((response) => {
        const kept = response.ok && response.type === "basic"
          && !/no-store|private/.test(response.headers.get("Cache-Control") || "");
        if (kept) cache.put(key, response.clone());
        return response;
      });
    if (cached) {
      event.waitUntil(refreshed.catch(() => undefined));
      return cached;
    }
    return refreshed;
  })());
});
