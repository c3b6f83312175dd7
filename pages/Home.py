"""Home: the default model, the device, the cache, and a card per page."""
from ui.navigation import through_app

through_app()  # first: the menu shows before the seconds of imports below

import streamlit as st
import torch

from ui import widgets
from ui.limits import FIELDS, load_limits
from ui.page import PAGES, reported, setup
from ui.resources import result_cache, run_queue, served_models
from vitviz.models.registry import MODELS, default_model, pick_device
from vitviz.rendering.precision import resolve_precision


def device_metric() -> tuple[str, str]:
    """The device, and the arithmetic the default method uses on it (precision "auto")."""
    device = pick_device()
    arithmetic = resolve_precision("auto", device)
    if device.type == "cuda":
        return f"Device · {torch.cuda.get_device_name(device)}", f"CUDA · {arithmetic}"
    return f"Device · {torch.get_num_threads()} threads", f"CPU · {arithmetic}"


state = setup("home", "Feature visualisation (activation maximisation) for Vision Transformers and"
                      " CNNs: find the images that drive a unit hardest, with methods that work on"
                      " ViTs.")
with reported():
    default, reason = default_model()
    cache, limits = result_cache(), load_limits()
    queue = run_queue(limits.max_concurrent_runs).status()
    metrics = st.columns([1.5, 1, 1, 1])
    metrics[0].metric("Default model", default)
    metrics[1].metric(*device_metric())
    metrics[2].metric(f"Result cache · {cache.volume() / 2**20:.1f} MB",
                      f"{len(cache.summaries())} runs")
    busy = len(queue["running"]) + len(queue["waiting"])
    metrics[3].metric(f"Device queue · {len(queue['waiting'])} waiting",
                      f"{len(queue['running'])} running" if busy else "idle")
    st.info(f"**{default}** is the default model: {reason}.", icon=":material/info:")

    st.subheader("Model", anchor=False)
    left, right = st.columns([1, 2], gap="large")
    with left:
        name = widgets.model_picker(state)
    with right:
        st.markdown("Every page starts on this model; a page's own choice (or a link) overrides "
                    "it. Models load once per server and are shared by all sessions.")
        widgets.random_init_warning(name)
    widgets.problems(state.problems)
    state.publish()
    with st.expander("All models served here"):
        st.dataframe([{"model": widgets.served_name(n), "architecture": MODELS[n].architecture,
                       "weights": "available" if MODELS[n].available() else "not installed",
                       "description": MODELS[n].description} for n in served_models()],
                     hide_index=True)

    st.subheader("Pages", anchor=False)
    pages = list(PAGES.values())
    for start in range(0, len(pages), 3):
        for column, page in zip(st.columns(3), pages[start:start + 3]):
            with column.container(border=True, height="stretch"):
                st.page_link(page.path, label=page.title, icon=page.icon)
                st.caption(page.blurb)

    with st.expander("Limits on this server"):
        st.caption("Set by environment variables or `vitviz_limits.toml` (another path in "
                   "VITVIZ_LIMITS_FILE). One run computes at a time per model; the others wait in "
                   "a first-come, first-served queue shared by all sessions.")
        st.dataframe([{"limit": text, "value": getattr(limits, field),
                       "environment variable": env,
                       "source": limits.sources.get(field, "default")}
                      for field, (env, _, text) in FIELDS.items()], hide_index=True)
    # The folder is named by VITVIZ_CACHE_DIR, not shown: a public page need not reveal the
    # server's file system.
    st.caption("Result cache: the folder named by VITVIZ_CACHE_DIR (default `cache`); size "
               "limit VITVIZ_CACHE_SIZE_LIMIT in bytes; VITVIZ_ALLOW_DELETE=0 stops visitors "
               "deleting runs.")
