"""Incident categories: the platform's codes, modelled on GB/T 30428's event classes."""

from typing import Final

# Modelled on the event classes of GB/T 30428.2 (数字化城市管理信息系统 管理部件和事件), with
# its "parts" (管理部件) folded into public_facilities, which is how workers report them.

CATEGORY_NAMES_ZH: Final[dict[str, str]] = {
    "environment.garbage": "暴露垃圾",
    "environment.refuse_accumulation": "积存垃圾渣土",
    "environment.road_not_clean": "道路不洁",
    "environment.waste_bin_overflow": "垃圾箱满溢",
    "environment.open_burning": "露天焚烧",
    "environment.sewage_overflow": "污水外溢",
    "environment.water_body_dirty": "水域不洁",
    "environment.dead_animal": "动物尸体",
    "environment.green_space_dirty": "绿地脏乱",
    "public_facilities.manhole_cover": "井盖破损或缺失",
    "public_facilities.street_light": "路灯损坏",
    "public_facilities.road_damage": "道路破损",
    "public_facilities.traffic_sign": "交通标志损坏",
    "public_facilities.guardrail": "护栏损坏",
    "public_facilities.rain_grate": "雨水篦子破损",
    "public_facilities.public_toilet": "公厕设施损坏",
    "public_facilities.bus_shelter": "公交站亭损坏",
    "public_facilities.fire_hydrant": "消防栓损坏",
    "public_facilities.street_tree": "行道树缺株或损坏",
    "street_order.unlicensed_vendor": "无照经营游商",
    "street_order.outside_shop_operation": "店外经营",
    "street_order.road_occupation": "占道经营",
    "street_order.illegal_parking": "机动车乱停放",
    "street_order.bicycle_clutter": "非机动车乱停放",
    "street_order.clothes_drying": "乱拉乱挂",
    "street_order.begging_performing": "乞讨卖艺",
    "construction.illegal_building": "违法建设",
    "construction.site_dust": "工地扬尘",
    "construction.muck_spill": "道路遗撒",
    "construction.unauthorized_excavation": "无证掘路",
    "construction.site_enclosure": "施工围挡不规范",
    "construction.night_noise": "夜间施工扰民",
    "emergency.road_collapse": "路面塌陷",
    "emergency.water_main_burst": "自来水管破裂",
    "emergency.gas_leak": "燃气泄漏",
    "emergency.road_flooding": "道路积水",
    "emergency.fallen_tree": "树木倒伏",
    "emergency.fire": "火情",
    "advertising.illegal_small_ads": "非法小广告",
    "advertising.illegal_billboard": "违规户外广告",
    "advertising.banner": "违规悬挂横幅",
    "advertising.damaged_shop_sign": "店招破损",
    "advertising.leaflet_distribution": "散发广告",
    "other.unclassified": "其他事件",
}

CLASS_NAMES_ZH: Final[dict[str, str]] = {
    "environment": "市容环境",
    "public_facilities": "公共设施",
    "street_order": "街面秩序",
    "construction": "施工管理",
    "emergency": "突发事件",
    "advertising": "宣传广告",
    "other": "其他事件",
}
"""The classes (the part of a code before the dot) by their Chinese names, as GB/T 30428.2
names its event classes; public_facilities stands for its 管理部件."""

CATEGORIES: Final[tuple[str, ...]] = tuple(CATEGORY_NAMES_ZH)
"""The platform's incident category codes, `class.subclass`."""

UNCLASSIFIED: Final = "other.unclassified"

LOCKER_CATEGORY: Final = "locker.documents"
"""The category of a cloud locker's task (docs/LOCKERS.md): documents a resident dropped
off, for the grid worker to carry to the community office and back. Filed only from a
locker's drop-off, so it stands outside CATEGORIES, which lists what people report."""

TASK_CATEGORY_NAMES_ZH: Final[dict[str, str]] = {LOCKER_CATEGORY: "云柜办事"}
"""Categories of tasks that are no reported problem, by their Chinese names."""

_KNOWN_CATEGORIES: Final = frozenset(CATEGORIES) | frozenset(TASK_CATEGORY_NAMES_ZH)


def normalize_category(code: str) -> tuple[str, bool]:
    """The platform category for `code` and whether it was unknown (then other.unclassified)."""
    canonical = code.strip().lower()
    if canonical in _KNOWN_CATEGORIES:
        return canonical, False
    return UNCLASSIFIED, True
