"""Runs: the result cache shared by all sessions; reopen, export, delete."""
from ui.navigation import through_app

through_app()  # first: the menu shows before the seconds of imports below

import streamlit as st

from ui import display, widgets
from ui.limits import deletion_allowed
from ui.page import PAGES, reported, setup, show_cache_notices
from ui.resources import result_cache
from ui.settings import page_for, to_query


def run_label(summary: dict) -> str:
    seeds = summary["seeds"]
    return (f"{summary['created'][:16].replace('T', ' ')} · {summary['model']} · "
            f"{summary['objective']} {summary['unit']} of {summary['layer']} · "
            f"{summary['preset']} · {len(seeds)} seed{'s' * (len(seeds) > 1)} · "
            f"{summary['steps']} steps")


def delete_run(cache, key: str) -> None:
    if cache.delete(key):
        st.toast(f"Deleted run {key[:12]}…")
    else:
        st.toast(f"Run {key[:12]}… was already gone (deleted by another session).")


state = setup("runs", "Every finished run in the result cache, newest first. The cache is shared "
                      "by all sessions: a run made anywhere can be reopened, exported or (where "
                      "the server allows) deleted here. The link of this page names the selected "
                      "run.")

with reported():
    cache = result_cache()
    summaries = cache.summaries()
    key = state.key("run")
    if key not in st.session_state:
        wanted = state.wanted("run")
        if wanted is not None and wanted not in summaries:
            state.problems.append(f"No run with key {wanted} is in the cache: it was deleted, "
                                  "evicted to respect the cache's size limit, or never finished.")
        st.session_state[key] = wanted if wanted in summaries else next(iter(summaries), None)
    elif st.session_state[key] not in summaries:
        st.session_state[key] = next(iter(summaries), None)
    widgets.problems(state.problems)
    if not summaries:
        st.info("No runs yet: start one on the Optimise page.", icon=":material/info:")
        st.page_link(PAGES["optimise"].path, label="Optimise", icon=PAGES["optimise"].icon)
        st.stop()

    st.dataframe(
        [{"created": s["created"].replace("T", " ")[:19],
          "model": s["model"] + (" ⚠ random" if s["random_init"] else ""),
          "preset": s["preset"], "target": f"{s['objective']} {s['unit']} · {s['layer']}",
          "seeds": ", ".join(map(str, s["seeds"])), "steps": s["steps"],
          "shifted & zoomed / photo max": ", ".join(
              f"{a:.2f}×" for a in s.get("robust_vs_photo_max", [])) or "not measured",
          "time (s)": s["elapsed_s"]} for s in summaries.values()],
        hide_index=True, height=min(38 + 35 * len(summaries), 250),
    )
    chosen = st.selectbox("Run", list(summaries), key=key,
                          format_func=lambda k: run_label(summaries[k]))
    state.keep("run", chosen)
    state.publish()

    result = cache.get(chosen)
    if result is None:  # deleted by another session since the listing, or unreadable
        show_cache_notices()
        st.info(f"Run {chosen[:12]}… is no longer in the cache. Pick another run.",
                icon=":material/info:")
        st.stop()
    actions = st.container(horizontal=True, vertical_alignment="center")
    target = page_for(result)
    if target is not None:
        page, settings = target
        actions.page_link(PAGES[page].path, label=f"Open in {PAGES[page].title}",
                          icon=":material/open_in_new:",
                          query_params={k: to_query(v) for k, v in settings.items()})
    if deletion_allowed():
        # The key travels with the click: a rerun that changes the selection (another session
        # deleted this run meanwhile) must not redirect the deletion to another run.
        actions.button("Delete this run", icon=":material/delete:", on_click=delete_run,
                       args=(cache, chosen))
    actions.caption(f"Key `{chosen}`")
    if result.model.get("random_init"):
        widgets.random_init_warning(result.config["model"])
    display.run_view(result, True, key="runs.result", stem=f"vitviz_{chosen[:12]}")
    with st.expander("Config, model and metrics (JSON)"):
        st.json({"config": result.config, "model": result.model, "metrics": result.metrics},
                expanded=2)
