"""CSV cells a spreadsheet will not run, and a writer that streams.

A cell starting with =, +, -, @, a tab or a carriage return is a formula to Excel and
LibreOffice; a leading apostrophe makes it text. `restore` undoes it when a file is read back.
"""

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def restore(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


class Echo:
    """A file-like object whose write() returns the line, for csv.writer to stream."""

    def write(self, value: str) -> str:
        return value
