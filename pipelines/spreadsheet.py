"""Exports that open safely in a spreadsheet.

Record ids, entities and notes come from data and from analysts; a cell such as
``=HYPERLINK(...)`` would run when an export is opened in a spreadsheet. A leading single
quote makes the spreadsheet show the text as typed (OWASP's advice against CSV
injection). Every file vigil writes for people (label exports, flag and score files)
goes through :func:`spreadsheet_safe`.
"""

from __future__ import annotations

import pandas as pd

#: A text cell starting with one of these is read as a formula by common spreadsheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell a spreadsheet would run as a formula quoted;
    numbers and times are left as they are. Column-wise (scores files hold millions of
    rows): only text columns are checked, and only their risky cells change."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        try:
            risky = values.str.startswith(FORMULA_PREFIXES, na=False).astype(bool)
        except AttributeError:  # no text at all in this column
            continue
        if risky.any():
            out[column] = values.astype(object).where(~risky, "'" + values[risky].astype(str))
    return out


def safe_cell(value: object) -> object:
    """One value as :func:`spreadsheet_safe` would write it: text a spreadsheet would run
    as a formula gets the leading quote; anything else is returned as it is (for a table
    in a page people copy into a spreadsheet, such as a case file)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
