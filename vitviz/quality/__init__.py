"""How good a picture is, measured without people: quality figures and the independent judge."""
