"""The quarantine-share guard: a stage that would throw most of its input away stops instead."""

from __future__ import annotations

import pandas as pd

from capacity_forecaster.errors import InputError


def count_reasons(quarantine: pd.DataFrame, into: dict[str, tuple[int, str]]) -> None:
    """Add the quarantine's reason codes to ``into`` (code -> (rows, first full reason))."""
    if quarantine.empty:
        return
    reasons = quarantine["reason"].astype(str)
    codes = reasons.str.split(":", n=1).str[0]
    for code, count in codes.value_counts().items():
        rows, example = into.get(str(code), (0, str(reasons[codes == code].iloc[0])))
        into[str(code)] = (rows + int(count), example)


def check_quarantine_share(stage: str, rows_in: int, rows_quarantined: int, limit: float, key: str,
                           reasons: dict[str, tuple[int, str]], kept: str) -> None:
    """Stop a stage that would quarantine more than ``limit`` of its input rows.

    Raises:
        InputError: one line with the share, the setting, the main reason (with an example) and how
            to go on anyway (``--force``).
    """
    if rows_in == 0 or rows_quarantined / rows_in <= limit:
        return
    share = rows_quarantined / rows_in
    main = ""
    if reasons:
        code, (count, example) = max(reasons.items(), key=lambda item: item[1][0])
        main = f"; mostly {code} ({count:,} records, e.g. {example[:160]!r})"
    raise InputError(
        f"{stage}: {rows_quarantined:,} of {rows_in:,} rows ({share:.0%}) would be quarantined, more than "
        f"{key} = {limit:g}{main}; {kept}. Fix the input (see the reasons), or rerun with --force "
        f"(or set {key}: 1.0) to accept it"
    )
