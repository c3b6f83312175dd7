"""vitviz dashboard: `streamlit run app.py`. The pages, Home included, live in pages/."""
# Only the navigation, which imports nothing but Streamlit: the menu and a loading message show
# before the page imports torch and vitviz, seconds on a fresh server.
from ui.navigation import run_app

run_app()
