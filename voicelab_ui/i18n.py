"""UI strings in English and Simplified Chinese.

Every label, button and message the page shows goes through ``t(key)``,
which returns a Gradio ``I18nData`` the browser translates by its language
(or the language chosen in Settings). ``text(key, lang)`` gives the plain
string for messages built on the server. Keys used while building the page
are recorded so a test can prove none lacks a translation.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("en", "zh-CN")

# key: (English, 简体中文)
STRINGS: dict[str, tuple[str, str]] = {}

USED_KEYS: set[str] = set()


def add(entries: dict[str, tuple[str, str]]) -> None:
    """Register strings (each tab module adds its own at import)."""
    STRINGS.update(entries)


def text(key: str, lang: str = "en", **fmt: Any) -> str:
    """The plain string for ``key`` in ``lang`` (English when missing)."""
    en, zh = STRINGS.get(key, (key, key))
    s = zh if lang.lower().startswith("zh") else en
    return s.format(**fmt) if fmt else s


def t(key: str) -> Any:
    """A translatable label for a component; records the key as used."""
    from gradio.i18n import I18nData

    USED_KEYS.add(key)
    return I18nData(key) if key in STRINGS else key


def catalogs() -> dict[str, dict[str, str]]:
    return {"en": {k: v[0] for k, v in STRINGS.items()}, "zh-CN": {k: v[1] for k, v in STRINGS.items()}}


def gradio_i18n() -> Any:
    import gradio as gr

    return gr.I18n(**catalogs())


LANG_STORAGE_KEY = "voicelab_lang"
LANG_COOKIE = "voicelab_lang"


def ui_language(request: Any = None) -> str:
    """The language of the page that made the current request: 'en' or 'zh-CN'.

    The head script stores the page's language in a cookie (the Settings choice,
    else the browser's); without one the Accept-Language header decides. Outside
    a Gradio event (tests, scripts) it is English.
    """
    from engines.core.messages import normalize_language

    if request is None:
        try:
            from gradio.context import LocalContext

            request = LocalContext.request.get(None)
        except Exception:  # noqa: BLE001 - no Gradio context
            request = None
    if request is None:
        return "en"
    try:
        cookies = dict(getattr(request, "cookies", {}) or {})
        if cookies.get(LANG_COOKIE):
            return normalize_language(cookies[LANG_COOKIE])
        accept = dict(getattr(request, "headers", {}) or {}).get("accept-language", "")
    except Exception:  # noqa: BLE001
        return "en"
    return normalize_language(accept.split(",")[0])


def ui_text(key: str, **fmt: Any) -> str:
    """``text(key)`` in the language of the page that made the current request."""
    USED_KEYS.add(key)
    return text(key, ui_language(), **fmt)


def headers(keys: Any, lang: str | None = None) -> list[str]:
    """Column headers in ``lang`` (default: the current page's); Gradio does not translate them on updates."""
    lang = lang or ui_language()
    out = []
    for k in keys:
        USED_KEYS.add(k)
        out.append(text(k, lang))
    return out


def table(rows: Any, keys: Any, lang: str | None = None) -> dict:
    """A Dataframe value whose headers are in the page's language."""
    return {"headers": headers(keys, lang), "data": [list(r) for r in rows]}


def language_head(default: str = "auto") -> str:
    """A <head> script that applies the chosen language before Gradio picks its locale.

    Gradio translates by ``navigator.language``; the Settings switch stores a
    choice in localStorage and this script presents it as the browser language.
    Any Chinese browser locale maps to zh-CN.
    """
    default = default if default in ("auto", *LANGUAGES) else "auto"
    return f"""<script>
(function() {{
  var pref = localStorage.getItem("{LANG_STORAGE_KEY}") || "{default}";
  var nav = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
  var lang = pref !== "auto" ? pref : (nav.toLowerCase().indexOf("zh") === 0 ? "zh-CN" : nav);
  try {{
    Object.defineProperty(Navigator.prototype, "language", {{get: function() {{ return lang; }}, configurable: true}});
    Object.defineProperty(Navigator.prototype, "languages", {{get: function() {{ return [lang]; }}, configurable: true}});
  }} catch (e) {{}}
  document.documentElement.lang = lang;
  var server = lang.toLowerCase().indexOf("zh") === 0 ? "zh-CN" : "en";
  document.cookie = "{LANG_COOKIE}=" + server + "; path=/; SameSite=Lax";
}})();
</script>"""


def missing_translations() -> list[str]:
    """Used keys without both an English and a Chinese string."""
    return sorted(k for k in USED_KEYS if k not in STRINGS or not all(STRINGS[k]))


add({
    "app.title": ("VoiceLab studio", "VoiceLab 工作室"),
    "tab.dataset": ("Dataset", "数据集"),
    "tab.rvc_train": ("RVC Train", "RVC 训练"),
    "tab.index": ("Index", "索引"),
    "tab.convert": ("Convert", "推理转换"),
    "tab.ab": ("A/B Listen", "A/B 试听"),
    "tab.cosyvoice": ("CosyVoice", "CosyVoice"),
    "tab.jobs": ("Jobs", "任务"),
    "tab.settings": ("Settings / Assets", "设置 / 模型文件"),
    "job.panel": ("Current job", "当前任务"),
    "job.log": ("Log", "日志"),
    "job.cancel": ("Cancel", "取消"),
    "job.progress": ("Progress", "进度"),
    "job.none": ("No job selected. Start one from a tab, or open one in Jobs.", "未选择任务。请在各标签页启动任务，或在“任务”页打开。"),
    "jobs.refresh": ("Refresh", "刷新"),
    "jobs.state": ("State", "状态"),
    "jobs.operation": ("Operation", "操作"),
    "jobs.list": ("Job history", "任务历史"),
    "jobs.open": ("Open job", "打开任务"),
    "jobs.open_id": ("Job id", "任务 ID"),
    "jobs.retry": ("Run again", "重新运行"),
    "job.hint": ("What to do", "解决办法"),
    "job.cancelling": ("Cancelling…", "正在取消…"),
    "job.lane": ("{lane} lane", "{lane}通道"),
    "job.warm": ("warm worker", "已预热的工作进程"),
    "lane.training": ("training", "训练"),
    "lane.listening": ("listening", "试听"),
    "lane.cpu": ("cpu", "CPU"),
    "jobs.choose_first": ("Choose a job first.", "请先选择一个任务。"),
    "common.all": ("all", "全部"),
    "plot.step": ("step", "步数"),
    "plot.batch": ("batch", "批次"),
    "plot.loss": ("loss", "损失"),
    "plot.lr": ("learning rate", "学习率"),
    "plot.acc": ("accuracy", "准确率"),
})

# Messages the page itself raises (gr.Error) in both languages.
add({
    "err.ab_no_pair": ("No pair to vote on yet: start a comparison first.", "还没有可投票的一对：请先开始一次比较。"),
    "err.ab_same_params": ("The two parameter sets are the same; change something in set B.", "两组参数相同；请修改参数组 B。"),
    "err.ab_source": ("Upload a source clip or pick one from a dataset.", "请上传源音频，或从数据集中选择一个。"),
    "err.ab_two_ckpts": ("Pick at least two saved checkpoints (weights/<experiment>_e<E>_s<S>.pth).", "请至少选择两个已保存的检查点（weights/<实验名>_e<轮数>_s<步数>.pth）。"),
    "err.ab_two_models": ("Pick two or more models.", "请选择两个或更多模型。"),
    "err.click_clip": ("Click a clip in the table first.", "请先在表格中点击一个切片。"),
    "err.convert_inputs": ("Add audio files or a folder to convert.", "请添加要转换的音频文件或文件夹。"),
    "err.dataset_name": ("Give the dataset a name.", "请为数据集起一个名称。"),
    "err.exp_name": ("Give the experiment a name (or pick an existing one).", "请为实验起一个名称（或选择已有的实验）。"),
    "err.import_source": ("Upload a file or type a folder, URL or repo id.", "请上传文件，或填写文件夹、URL 或仓库 ID。"),
    "err.nothing_missing": ("Nothing is missing.", "没有缺失的文件。"),
    "err.pick_average": ("Pick the experiment to average.", "请选择要平均的实验。"),
    "err.pick_compare": ("Choose at least one speed, preset or checkpoint to compare.", "请至少选择一个语速、预设或检查点进行对比。"),
    "err.pick_data": ("Pick the prepared data (step 2) or give a train data.list.", "请选择已准备的数据（第 2 步），或填写训练用的 data.list。"),
    "err.pick_dataset": ("Pick a dataset first.", "请先选择一个数据集。"),
    "err.pick_dataset_step1": ("Pick a dataset in step 1 first.", "请先在第 1 步中选择数据集。"),
    "err.pick_experiment": ("Pick an experiment.", "请选择一个实验。"),
    "err.pick_g": ("Pick a G_*.pth training checkpoint.", "请选择一个 G_*.pth 训练检查点。"),
    "err.pick_model": ("Pick a model first.", "请先选择一个模型。"),
    "err.select_downloads": ("Select the model files to download.", "请选择要下载的模型文件。"),
    "err.upload_list": ("Upload a transcript list first.", "请先上传文本列表。"),
})
