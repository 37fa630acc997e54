"""Text helpers with no Django import, shared by importers and model backends."""


def text_clean(text: str) -> str:
    """Drop NUL characters: PostgreSQL text cannot hold them, and small models do emit them."""
    return text.replace("\x00", "") if "\x00" in text else text
