"""vitviz dashboard: `streamlit run app.py`. The pages live in pages/; ui.page lists them."""
from ui.page import navigation

navigation()
