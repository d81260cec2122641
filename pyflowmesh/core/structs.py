"""``@dataclass`` without its cost at import: the same classes, no code generated.

The standard decorator writes the source of ``__init__``, ``__repr__``, ``__eq__``,
``__hash__`` and the frozen ``__setattr__`` of every class and ``exec``s it, and with
``slots=True`` inspects and rebuilds the class. In Pyodide that was most of
``import pyflowmesh`` (about 3 ms a class, some 50 classes on the import path). This
decorator takes the same arguments (those pyflowmesh uses: ``init``, ``repr``, ``eq``,
``frozen``, ``slots``, ``kw_only``) and the same :func:`dataclasses.field`, and gives
classes that behave the same where it matters: keyword-only and frozen as declared
(:class:`dataclasses.FrozenInstanceError`), field-wise equality and hash, the same
``repr``, ``__slots__``, ``__match_args__``, and a real ``__dataclass_fields__``, so
:func:`dataclasses.fields`, :func:`~dataclasses.asdict`, :func:`~dataclasses.replace` and
:func:`~dataclasses.is_dataclass` work on them. The methods are shared closures over the
field list instead of generated code, so they are slower per call (an ``__init__`` loops
over the fields); no class here is built often enough for that to show.

Not supported (pyflowmesh does not use them): ``order``, ``unsafe_hash``, ``InitVar``,
``__post_init__``, ``field(init=False)``, ``weakref_slot``, pickling a frozen slotted instance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar, TypeVar, dataclass_transform, overload

__all__ = ["dataclass"]

T = TypeVar("T", bound=type)
_MISSING: Any = dataclasses.MISSING
# The markers dataclasses.fields() and replace() read (private, but the same since Python 3.7).
_FIELD: Any = vars(dataclasses)["_FIELD"]
_FIELD_CLASSVAR: Any = vars(dataclasses)["_FIELD_CLASSVAR"]
_CLASSVAR_PREFIXES = ("ClassVar", "typing.ClassVar", "t.ClassVar")


@overload
def dataclass(cls: T, /) -> T: ...
@overload
def dataclass(*, init: bool = True, repr: bool = True, eq: bool = True, frozen: bool = False,
              slots: bool = False, kw_only: bool = False) -> Callable[[T], T]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def dataclass(cls: Any = None, /, *, init: bool = True, repr: bool = True, eq: bool = True, frozen: bool = False,
              slots: bool = False, kw_only: bool = False) -> Any:
    """Like :func:`dataclasses.dataclass` with these arguments; see the module's docstring."""

    def wrap(cls: Any) -> Any:
        return _process(cls, init, repr, eq, frozen, slots, kw_only)

    return wrap if cls is None else wrap(cls)


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(_CLASSVAR_PREFIXES)
    return getattr(annotation, "__origin__", annotation) is ClassVar


def _process(cls: Any, init: bool, repr_: bool, eq: bool, frozen: bool, slots: bool, kw_only: bool) -> Any:
    all_fields: dict[str, Any] = {}
    for base in cls.__mro__[-1:0:-1]:
        all_fields.update(base.__dict__.get("__dataclass_fields__", {}))
    annotations = cls.__dict__.get("__annotations__")
    if annotations is None:  # Python 3.14 without ``from __future__ import annotations``: evaluated lazily
        try:
            import annotationlib  # type: ignore[import-not-found,unused-ignore]

            annotations = annotationlib.get_annotations(cls, format=annotationlib.Format.FORWARDREF)
        except ImportError:
            annotations = getattr(cls, "__annotations__", {})
    for name, annotation in annotations.items():
        default = cls.__dict__.get(name, _MISSING)
        spec: Any = default if isinstance(default, dataclasses.Field) else dataclasses.field(default=default)
        spec.name = name
        spec.type = annotation
        if _is_classvar(annotation):
            spec._field_type = _FIELD_CLASSVAR
        else:
            spec._field_type = _FIELD
            if spec.kw_only is _MISSING:
                spec.kw_only = kw_only
            if spec.default is not _MISSING and type(spec.default) in (list, dict, set):
                raise ValueError(f"mutable default {type(spec.default)} for field {name} is not allowed: "
                                 "use default_factory")
        if isinstance(default, dataclasses.Field):
            if spec.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        all_fields[name] = spec
    for name, value in cls.__dict__.items():
        if isinstance(value, dataclasses.Field) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")

    fields = [f for f in all_fields.values() if f._field_type is _FIELD]
    names = tuple(f.name for f in fields)
    positional = tuple(f.name for f in fields if not f.kw_only)
    seen_default = False
    for f in fields:
        if not f.kw_only:
            if f.default is not _MISSING or f.default_factory is not _MISSING:
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")

    if slots and "__slots__" not in cls.__dict__:
        body = dict(cls.__dict__)
        inherited = {name for base in cls.__mro__[1:-1] for name in base.__dict__.get("__slots__", ())}
        body["__slots__"] = tuple(name for name in names if name not in inherited)
        for name in names:
            body.pop(name, None)
        body.pop("__dict__", None)
        body.pop("__weakref__", None)
        qualname = cls.__qualname__
        cls = type(cls)(cls.__name__, cls.__bases__, body)
        cls.__qualname__ = qualname
    cls.__dataclass_fields__ = all_fields

    def put(name: str, value: Any) -> None:
        if name not in cls.__dict__:
            setattr(cls, name, value)

    if init:
        put("__init__", _make_init(cls, fields, positional, frozen))
    if repr_:
        put("__repr__", _make_repr(tuple(f.name for f in fields if f.repr)))
    compared = tuple(f.name for f in fields if f.compare)
    values: Callable[[Any], Any] = attrgetter(*compared) if compared else (lambda self: ())
    if eq:
        put("__eq__", _make_eq(values))
    class_hash = cls.__dict__.get("__hash__", _MISSING)
    explicit_hash = not (class_hash is _MISSING or (class_hash is None and "__eq__" in cls.__dict__))
    if eq and not explicit_hash:
        cls.__hash__ = _make_hash(values) if frozen else None
    if frozen:
        cls.__setattr__, cls.__delattr__ = _make_frozen(cls, frozenset(names))
    put("__match_args__", positional)
    return cls


def _make_init(cls: Any, fields: list[dataclasses.Field[Any]], positional: tuple[str, ...], frozen: bool) -> Any:
    specs: tuple[tuple[str, Any, Any], ...] = tuple((f.name, f.default, f.default_factory) for f in fields)
    qualname = cls.__qualname__
    npositional = len(positional)
    all_names = frozenset(f.name for f in fields)
    nfields = len(all_names)
    set_value = object.__setattr__ if frozen else setattr

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if args:
            if len(args) > npositional:
                raise TypeError(f"{qualname}.__init__() takes {npositional + 1} positional arguments "
                                f"but {len(args) + 1} were given")
            for name, value in zip(positional, args, strict=False):
                if name in kwargs:
                    raise TypeError(f"{qualname}.__init__() got multiple values for argument {name!r}")
                kwargs[name] = value
        for name, value in kwargs.items():
            if name not in all_names:
                raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument {name!r}")
            set_value(self, name, value)
        if len(kwargs) == nfields:
            return
        missing = []
        for name, default, factory in specs:
            if name in kwargs:
                continue
            if default is not _MISSING:
                set_value(self, name, default)
            elif factory is not _MISSING:
                set_value(self, name, factory())
            else:
                missing.append(name)
        if missing:
            raise TypeError(f"{qualname}.__init__() missing {len(missing)} required argument(s): "
                            + ", ".join(repr(name) for name in missing))

    __init__.__qualname__ = f"{qualname}.__init__"
    return __init__


def _make_repr(names: tuple[str, ...]) -> Any:
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__qualname__}({inner})"

    return __repr__


def _make_eq(values: Callable[[Any], Any]) -> Any:
    def __eq__(self: Any, other: Any) -> Any:
        if self is other:
            return True
        if other.__class__ is not self.__class__:
            return NotImplemented
        return values(self) == values(other)

    return __eq__


def _make_hash(values: Callable[[Any], Any]) -> Any:
    def __hash__(self: Any) -> int:
        return hash(values(self))

    return __hash__


def _make_frozen(cls: Any, names: frozenset[str]) -> tuple[Any, Any]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __setattr__, __delattr__
