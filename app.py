"""vitviz dashboard: `streamlit run app.py`. The pages, Home included, live in pages/."""
from ui.page import run_app

run_app()
