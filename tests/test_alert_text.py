"""SMS text handling: unaccenting, GSM-7 detection, segment arithmetic and fitting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.text import count_segments, fit_segments, is_gsm7, unaccent

CODE = "000.00.12.H55-250101-0001"
DUE = "16:30 22/01/2026"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hồ sơ đã quá hạn", "Ho so da qua han"),
        ("ĐỒNG THÁP Đắk Lắk", "DONG THAP Dak Lak"),
        ("Nguyễn Thị Ngọc Ánh, Phường Bến Nghé", "Nguyen Thi Ngoc Anh, Phuong Ben Nghe"),
        ("ắằẳẵặ ấầẩẫậ ếềểễệ ốồổỗộ ớờởỡợ ứừửữự ỳỷỹỵý", "aaaaa aaaaa eeeee ooooo ooooo uuuuu yyyyy"),
        ("đ Đ", "d D"),
        ("no accents 123", "no accents 123"),
    ],
)
def test_unaccent(text: str, expected: str) -> None:
    """Diacritics are stripped and đ/Đ, which NFD leaves alone, map to d/D."""
    assert unaccent(text) == expected
    assert is_gsm7(unaccent(text))


def test_unaccent_decomposed_input() -> None:
    """Text already in NFD (combining marks) unaccents the same as precomposed text."""
    import unicodedata

    assert unaccent(unicodedata.normalize("NFD", "Quá hạn")) == "Qua han"


@pytest.mark.parametrize(
    ("text", "gsm"),
    [("Ho so qua han @ 16:30", True), ("a{b}[c]~^|€\\", True), ("Hồ sơ", False), ("đ", False), ("😀", False)],
)
def test_is_gsm7(text: str, gsm: bool) -> None:
    """GSM-7 covers the basic alphabet and the extension table, nothing else."""
    assert is_gsm7(text) is gsm


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("ấ" * 70, 1),
        ("ấ" * 71, 2),
        ("ấ" * 134, 2),
        ("ấ" * 135, 3),
        ("{" * 80, 1),  # 160 septets: extended characters count double
        ("{" * 81, 2),
        ("a" * 159 + "€", 2),
        ("a" * 152 + "{" + "a" * 152, 3),  # 306 septets, but an escape pair never splits across parts
        ("😀" * 35, 1),  # 70 UTF-16 code units
        ("😀" * 36, 2),
        ("a" * 69 + "ấ", 1),  # one Vietnamese letter makes the whole text UCS-2
        ("a" * 70 + "ấ", 2),
    ],
)
def test_count_segments(text: str, segments: int) -> None:
    """Segment counts follow 160/153 (GSM-7) and 70/67 (UCS-2)."""
    assert count_segments(text) == segments


def _alert(free_words: int) -> str:
    filler = " ".join(f"tu{i}" for i in range(free_words))
    return f"[TTHC] Ho so {CODE} ({filler}) sap qua han luc {DUE}. Lien he bo phan mot cua de xu ly ngay."


def test_fit_segments_returns_short_text_unchanged() -> None:
    """A text that already fits is returned as is."""
    text = _alert(3)
    assert count_segments(text) == 1
    assert fit_segments(text, 1, [CODE, DUE]) == text


def test_fit_segments_keeps_code_and_due_time() -> None:
    """Free text in the middle is dropped so the dossier code and the due time both survive."""
    text = _alert(80)
    assert count_segments(text) > 2
    fitted = fit_segments(text, 1, [CODE, DUE])
    assert count_segments(fitted) == 1
    assert CODE in fitted and DUE in fitted
    assert fitted.startswith("[TTHC] Ho so")
    assert "..." in fitted and "…" not in fitted  # "…" would turn a GSM-7 text into UCS-2
    assert is_gsm7(fitted)


def test_fit_segments_truncates_the_end_when_kept_parts_are_early() -> None:
    """When the kept parts come first, the tail is cut and marked with an ellipsis."""
    text = f"{CODE} {DUE} " + " ".join(f"chu{i}" for i in range(100))
    fitted = fit_segments(text, 1, [CODE, DUE])
    assert fitted.startswith(f"{CODE} {DUE} chu0 chu1")
    assert fitted.endswith("...")
    assert count_segments(fitted) == 1
    assert len(fitted) > 140  # cut only as much as needed


def test_fit_segments_unicode_uses_single_char_ellipsis() -> None:
    """A UCS-2 text gets "…", which costs one unit rather than three."""
    text = f"Hồ sơ {CODE} " + "chữ " * 60 + f"hạn {DUE}"
    fitted = fit_segments(text, 2, [CODE, DUE])
    assert count_segments(fitted) <= 2
    assert "…" in fitted and CODE in fitted and DUE in fitted


def test_fit_segments_impossible() -> None:
    """When the kept parts alone are too long, it refuses instead of cutting them."""
    with pytest.raises(ValueError, match="do not fit"):
        fit_segments("x" * 400, 1, ["x" * 400])
    with pytest.raises(ValueError, match="at least 1"):
        fit_segments("abc", 0)


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    before=st.lists(_word, max_size=40),
    middle=st.lists(_word, max_size=60),
    after=st.lists(_word, max_size=40),
    max_segments=st.integers(min_value=1, max_value=3),
)
def test_fit_segments_property(
    before: list[str], middle: list[str], after: list[str], max_segments: int
) -> None:
    """For any text, the result fits and still contains every kept substring."""
    text = " ".join([*before, CODE, *middle, DUE, *after])
    fitted = fit_segments(text, max_segments, [CODE, DUE])
    assert count_segments(fitted) <= max_segments
    assert CODE in fitted and DUE in fitted
    if count_segments(text) <= max_segments:
        assert fitted == text
