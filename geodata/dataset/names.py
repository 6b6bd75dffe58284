"""Synthetic but plausible Chinese name pools for the reference dataset.

Every name drawn here is invented (docs/DATASET.md: names are synthetic), except the few real
places the article names, which the generator sets itself.
"""

import numpy as np

# Two-character stems for roads, street offices and communities. Some echo Baoji's
# landmarks (石鼓, 炎帝, 陈仓); their placement in the dataset is synthetic.
_PLACE_STEM_TEXT = """
    渭河 宝光 红旗 建设 胜利 新华 东风 迎宾 滨河 振兴 光明 和平 文化 长青 科技 创业
    星火 龙山 凤鸣 石鼓 秦岭 太白 炎帝 青铜 姜城 渭水 金陵 峪泉 公园 火炬 友谊 团结
    解放 人民 新建 红星 朝阳 晨光 春晖 丰收 育才 明德 启明 民主 东岭 西岭 南坡 北坡
    高家 马营 八鱼 钓渭 磻溪 千河 金河 玉涧 清溪 梧桐 银杏 桃园 杏林 槐荫 柳湾 荷塘
    竹园 兰亭 紫荆 翠屏 锦绣 天台 烽火 蟠龙 卧龙 宝平 陇海 宝成 经一 经三 纬一 纬二
    纬三 东仁 西仁 联盟 先锋 前进 广元 福临 永宁 太平 长寿 延安 南关 北关 东关 西关
    中山 群众 宝塔 商贸 红光 创新 盛世 阳光 新福 金顶 石坝 塬上 河堤 桥南 桥北 站前
    陈仓 虢镇 千渭 蔡家 贾村 斗鸡 双碌 汇通 宏文 博学 书院 钟楼 鼓楼 星光 平安 清河
    金渭 秦川 西秦 汉风 周原 岐丰 凤翔 麟游 灵山 鸡峰 嘉陵 雍城 渭光 仓颉 金台 五丈
"""
PLACE_STEMS: tuple[str, ...] = tuple(_PLACE_STEM_TEXT.split())

# Weights follow the rough frequency of the most common surnames.
SURNAMES: tuple[str, ...] = tuple(
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于"
    "董程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪"
    "田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙"
)
GIVEN_CHARS: tuple[str, ...] = tuple(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红建"
    "文辉力鹏飞斌宇浩凯俊晨欣婷雪梅琳燕慧莉倩颖峰亮波宁鑫佳帅"
    "丹萍荣新利海春志国庆东云晓琴璐瑶博毅彬嘉晶蕾亚卫永小振晖"
)

COMMUNITY_SUFFIXES = ("路社区", "路社区", "路社区", "街社区", "苑社区", "村社区")
STREET_SUFFIXES = ("街道", "街道", "路街道")
COMPOUND_SUFFIXES = ("小区", "花园", "家园", "苑", "公寓", "新村", "嘉园", "雅居")
ORGANISATION_TEMPLATES = (
    "{stem}小学",
    "{stem}幼儿园",
    "{stem}社区卫生服务站",
    "宝鸡市{stem}中学",
    "{stem}供电所",
    "{stem}邮政支局",
    "宝鸡{stem}机械有限公司",
    "{stem}物业服务中心",
)
SHOP_TEMPLATES = (
    "{stem}便利店",
    "{stem}超市",
    "{surname}记五金店",
    "{stem}烟酒店",
    "{stem}大药房",
    "{surname}姐理发店",
    "{stem}水果店",
    "{stem}副食店",
)
RESTAURANT_TEMPLATES = (
    "{surname}家擀面皮",
    "{stem}臊子面馆",
    "{surname}记肉夹馍",
    "{stem}饭店",
    "{stem}小吃城",
    "{surname}家饺子馆",
    "{stem}火锅",
)
TEMPLATES_BY_KIND = {
    "organisation": ORGANISATION_TEMPLATES,
    "shop": SHOP_TEMPLATES,
    "restaurant": RESTAURANT_TEMPLATES,
}


def _pick(rng: np.random.Generator, pool: tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


def _stems(rng: np.random.Generator, n: int, reserved: tuple[str, ...]) -> list[str]:
    # Drawing stems without replacement is what makes names unique within a level.
    pool = [stem for stem in PLACE_STEMS if stem not in reserved]
    if n > len(pool):
        raise ValueError(f"only {len(pool)} place stems for {n} names")
    return [pool[int(i)] for i in rng.permutation(len(pool))[:n]]


def street_names(rng: np.random.Generator, n: int, reserved: tuple[str, ...]) -> list[str]:
    """Draw `n` distinct street-office names (XX街道), avoiding the reserved stems."""
    return [stem + _pick(rng, STREET_SUFFIXES) for stem in _stems(rng, n, reserved)]


def community_names(rng: np.random.Generator, n: int, reserved: tuple[str, ...]) -> list[str]:
    """Draw `n` distinct community names (XX路社区 and kin), avoiding the reserved stems."""
    return [stem + _pick(rng, COMMUNITY_SUFFIXES) for stem in _stems(rng, n, reserved)]


def person_names(rng: np.random.Generator, n: int) -> list[str]:
    """Draw `n` distinct Chinese personal names: a surname and one or two given characters."""
    # Zipf-like surname weights: 王, 李 and 张 are far more common than 龙.
    weights = 1.0 / np.arange(1, len(SURNAMES) + 1) ** 0.8
    weights /= weights.sum()
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        surname = SURNAMES[int(rng.choice(len(SURNAMES), p=weights))]
        given_length = 1 if rng.random() < 0.3 else 2
        name = surname + "".join(_pick(rng, GIVEN_CHARS) for _ in range(given_length))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def compound_name(rng: np.random.Generator) -> str:
    """A residential compound name such as 渭光花园."""
    return _pick(rng, PLACE_STEMS) + _pick(rng, COMPOUND_SUFFIXES)


def poi_name(rng: np.random.Generator, kind: str) -> str:
    """A name for a point of interest of `kind` (not a locker, which takes its compound's)."""
    if kind == "residential_compound":
        return compound_name(rng)
    template = _pick(rng, TEMPLATES_BY_KIND[kind])
    return template.format(stem=_pick(rng, PLACE_STEMS), surname=_pick(rng, SURNAMES))
