"""YAML from users, read in bounded time and memory.

Every YAML the program reads (stack files, worker configs) comes through here:
the size is checked before parsing, the event stream is scanned once to count
nodes (aliases counted by the size of what they expand to), aliases and depth,
and only then are the documents built, with libyaml's C loader where PyYAML
has it. An alias bomb or a multi-megabyte file is refused with a message, never
expanded; a file that is not UTF-8 names the line of the first bad byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: libyaml's loader where PyYAML was built with it (about ten times faster).
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Limits:
    """What one YAML text may hold; far above any real stack file or Talos config."""

    max_bytes: int
    #: Nodes after alias expansion: what a walk over the loaded data visits.
    max_nodes: int = 100_000
    max_aliases: int = 1_000
    max_depth: int = 64


class YamlError(ValueError):
    """The text is not acceptable YAML; ``where`` is ``line L, column C`` when known."""

    def __init__(self, problem: str, where: str = "") -> None:
        self.problem = problem
        self.where = where
        super().__init__(f"{problem} at {where}" if where else problem)


def read_text(path: Path, limits: Limits) -> str:
    """The file's text; refuses it before reading when it is larger than the limit.

    Raises OSError when the file cannot be read and YamlError when it is too
    large or not UTF-8.
    """
    if not path.is_file():
        if path.exists():
            raise YamlError("is not a regular file")
        raise FileNotFoundError(2, "No such file or directory", str(path))
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise YamlError(_too_large(size, limits))
    with path.open("rb") as file:
        data = file.read(limits.max_bytes + 1)
    return decode(data, limits)


def decode(data: bytes, limits: Limits) -> str:
    """UTF-8 text (a BOM is dropped) or YamlError naming the line of the first bad byte."""
    if len(data) > limits.max_bytes:
        raise YamlError(_too_large(len(data), limits))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise YamlError(
            f"is not UTF-8 text (byte 0x{data[error.start]:02x}; a binary file or another "
            "encoding): save it as UTF-8",
            _position(data, error.start),
        ) from None


def load_all(text: str, limits: Limits) -> list[Any]:
    """Every document of ``text`` (empty documents dropped), within ``limits``."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise YamlError(_too_large(size, limits))
    try:
        _check_shape(text, limits)
        loader = LOADER(text)
        try:
            documents = []
            while loader.check_node():
                document = loader.construct_document(loader.get_node())
                if document is not None:
                    documents.append(document)
            return documents
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "syntax error"
        raise YamlError(problem, _where(mark)) from None
    except yaml.reader.ReaderError as error:
        character = f"U+{error.character:04X}" if isinstance(error.character, int) else "?"
        raise YamlError(
            f"contains the character {character}, which YAML does not allow ({error.reason})",
            _position(text, error.position),
        ) from None
    except yaml.YAMLError as error:
        raise YamlError(str(error).splitlines()[0] if str(error) else "invalid YAML") from None


def load_one(text: str, limits: Limits) -> Any:
    """The single document of ``text`` (None when empty); more than one is an error."""
    documents = load_all(text, limits)
    if len(documents) > 1:
        raise YamlError(f"holds {len(documents)} YAML documents where one is expected")
    return documents[0] if documents else None


def _check_shape(text: str, limits: Limits) -> None:
    """One pass over the events: expanded size, aliases and depth, before any object exists.

    Sizes are (values, characters) as the loaded data holds them once every alias is
    expanded: what a walk over it visits and what dumping it writes.
    """
    #: Expanded size of each completed anchored node.
    anchored: dict[str, tuple[int, int]] = {}
    #: Open collections: [values so far, characters so far, anchor].
    open_nodes: list[list[Any]] = []
    total = [0, 0]
    aliases = 0
    max_characters = 2 * limits.max_bytes
    for event in yaml.parse(text, Loader=LOADER):
        if isinstance(event, yaml.DocumentStartEvent):
            anchored.clear()  # anchors are per document
            continue
        if isinstance(event, yaml.ScalarEvent):
            added = (1, len(event.value))
            if event.anchor:
                anchored[event.anchor] = added
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise YamlError(
                    f"uses more than {limits.max_aliases} aliases (*name); write the values out",
                    _where(event.start_mark),
                )
            if event.anchor not in anchored:
                raise YamlError(
                    f"alias *{event.anchor} refers to a node that contains it (a recursive "
                    "structure) or to no anchor",
                    _where(event.start_mark),
                )
            added = anchored[event.anchor]
        elif isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([1, 0, event.anchor])
            if len(open_nodes) > limits.max_depth:
                raise YamlError(
                    f"is nested deeper than {limits.max_depth} levels", _where(event.start_mark)
                )
            continue
        elif isinstance(event, yaml.CollectionEndEvent):
            values, characters, anchor = open_nodes.pop()
            added = (values, characters)
            if anchor:
                anchored[anchor] = added
        else:
            continue
        target = open_nodes[-1] if open_nodes else total
        target[0] += added[0]
        target[1] += added[1]
        values = total[0] + sum(node[0] for node in open_nodes)
        characters = total[1] + sum(node[1] for node in open_nodes)
        if values > limits.max_nodes or characters > max_characters:
            raise YamlError(
                f"expands to more than {limits.max_nodes} values or {max_characters} characters "
                "(aliases count as often as they are used: an alias bomb, or far larger than a "
                "config can be)",
                _where(event.start_mark),
            )


def _where(mark: Any) -> str:
    """Where a parser mark points."""
    return "" if mark is None else _line_column(mark.line, mark.column)


def _position(text: str | bytes, index: int) -> str:
    """Where an offset into the text (or into the bytes, before decoding) points."""
    if isinstance(text, str):
        return _line_column(text.count("\n", 0, index), index - text.rfind("\n", 0, index) - 1)
    return _line_column(text.count(b"\n", 0, index), index - text.rfind(b"\n", 0, index) - 1)


def _line_column(line: int, column: int) -> str:
    """Every message's form of a position: lines and columns from 1."""
    return f"line {line + 1}, column {column + 1}"


def _too_large(size: int, limits: Limits) -> str:
    return f"is {size} bytes, more than the {limits.max_bytes} bytes this program reads"
