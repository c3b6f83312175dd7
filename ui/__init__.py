"""Streamlit helpers shared by the dashboard's pages (app.py and pages/)."""
