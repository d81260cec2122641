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

``__post_init__`` runs after ``__init__`` as with dataclasses. Not supported (pyflowmesh does
not use them): ``order``, ``unsafe_hash``, ``InitVar``, ``field(init=False)``, ``weakref_slot``.
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


# A field as _process reads it: name, annotation, default, default_factory, kw_only, repr,
# compare, whether it is a ClassVar, and the dataclasses.Field the class body gave (or None).
_Spec = tuple[str, Any, Any, Any, bool, bool, bool, bool, Any]


class _LazyFields:
    """A class's ``__dataclass_fields__``, made of :class:`dataclasses.Field` objects on first use only.

    Making ten ``Field`` objects per class was a third of the decorator's cost; only
    :mod:`dataclasses`' functions (and tests) read them.
    """

    __slots__ = ("specs", "home")

    def __init__(self, specs: tuple[_Spec, ...]) -> None:
        self.specs = specs
        self.home: Any = None

    def __get__(self, instance: Any, owner: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for name, annotation, default, _factory, kw_only, _repr, _compare, classvar, given in self.specs:
            spec: Any = given if given is not None else dataclasses.field(default=default)
            spec.name, spec.type = name, annotation
            spec._field_type = _FIELD_CLASSVAR if classvar else _FIELD
            if not classvar and spec.kw_only is _MISSING:
                spec.kw_only = kw_only
            fields[name] = spec
        self.home.__dataclass_fields__ = fields
        return fields


def _specs_of(base: Any) -> tuple[_Spec, ...]:
    """The fields of a base class: one of ours, a standard dataclass, or neither (none)."""
    specs = base.__dict__.get("__struct_specs__")
    if specs is not None:
        return tuple(specs)
    fields = base.__dict__.get("__dataclass_fields__")
    if not fields:
        return ()
    return tuple((f.name, f.type, f.default, f.default_factory, f.kw_only is True, f.repr, f.compare,
                  f._field_type is _FIELD_CLASSVAR, f) for f in fields.values()
                 if f._field_type in (_FIELD, _FIELD_CLASSVAR))


def _process(cls: Any, init: bool, repr_: bool, eq: bool, frozen: bool, slots: bool, kw_only: bool) -> Any:
    specs: dict[str, _Spec] = {}
    for base in cls.__mro__[-1:0:-1]:
        for spec in _specs_of(base):
            specs[spec[0]] = spec
    own = cls.__dict__
    annotations = own.get("__annotations__")
    if annotations is None:  # Python 3.14 without ``from __future__ import annotations``: evaluated lazily
        try:
            import annotationlib  # type: ignore[import-not-found,unused-ignore]

            annotations = annotationlib.get_annotations(cls, format=annotationlib.Format.FORWARDREF)
        except ImportError:
            annotations = getattr(cls, "__annotations__", {})
    for name, annotation in annotations.items():
        value = own.get(name, _MISSING)
        classvar = _is_classvar(annotation)
        if isinstance(value, dataclasses.Field):
            field_kw_only = kw_only if value.kw_only is _MISSING else bool(value.kw_only)
            specs[name] = (name, annotation, value.default, value.default_factory, field_kw_only, value.repr,
                           value.compare, classvar, value)
            if value.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, value.default)
        else:
            specs[name] = (name, annotation, value, _MISSING, kw_only, True, True, classvar, None)
        if not classvar and type(specs[name][2]) in (list, dict, set):
            raise ValueError(f"mutable default {type(specs[name][2])} for field {name} is not allowed: "
                             "use default_factory")
    for name, value in own.items():
        if isinstance(value, dataclasses.Field) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")

    fields = [spec for spec in specs.values() if not spec[7]]
    names = tuple(spec[0] for spec in fields)
    positional = tuple(spec[0] for spec in fields if not spec[4])
    seen_default = False
    for name, _, default, factory, field_kw_only, *_ in fields:
        if not field_kw_only:
            if default is not _MISSING or factory is not _MISSING:
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {name!r} follows default argument")

    # The methods go into the class body (a slotted class is made anew: one type() call) or
    # onto the class; never over a method the class defines itself.
    home: list[Any] = []  # the final class, for the frozen __setattr__
    qualname = cls.__qualname__
    lazy = _LazyFields(tuple(specs.values()))
    methods: dict[str, Any] = {"__struct_specs__": lazy.specs, "__dataclass_fields__": lazy}
    if init:
        methods["__init__"] = _make_init(qualname, fields, positional, frozen, hasattr(cls, "__post_init__"))
    if repr_:
        methods["__repr__"] = _make_repr(tuple(spec[0] for spec in fields if spec[5]))
    compared = tuple(spec[0] for spec in fields if spec[6])
    values: Callable[[Any], Any] = attrgetter(*compared) if compared else (lambda self: ())
    if eq:
        methods["__eq__"] = _make_eq(values)
    class_hash = own.get("__hash__", _MISSING)
    explicit_hash = not (class_hash is _MISSING or (class_hash is None and "__eq__" in own))
    forced: dict[str, Any] = {}
    if eq and not explicit_hash:
        forced["__hash__"] = _make_hash(values) if frozen else None
    if frozen:
        forced["__setattr__"], forced["__delattr__"] = _make_frozen(home, frozenset(names))
    methods["__match_args__"] = positional
    methods["__replace__"] = _replace  # copy.replace(), as dataclasses gives since Python 3.13
    if frozen and slots:  # copy and pickle restore a frozen slotted instance without its __setattr__
        methods["__getstate__"], methods["__setstate__"] = _make_state(names)
    methods = {name: value for name, value in methods.items() if name not in own or name.startswith("__struct")}
    methods["__dataclass_fields__"] = lazy
    methods.update(forced)

    if slots and "__slots__" not in own:
        body = dict(own)
        inherited = {name for base in cls.__mro__[1:-1] for name in base.__dict__.get("__slots__", ())}
        body["__slots__"] = tuple(name for name in names if name not in inherited)
        for name in names:
            body.pop(name, None)
        body.pop("__dict__", None)
        body.pop("__weakref__", None)
        body.update(methods)
        cls = type(cls)(cls.__name__, cls.__bases__, body)
        cls.__qualname__ = qualname
    else:
        for name, value in methods.items():
            setattr(cls, name, value)
    lazy.home = cls
    home.append(cls)
    return cls


def _make_init(qualname: str, fields: list[_Spec], positional: tuple[str, ...], frozen: bool, post_init: bool) -> Any:
    specs = tuple((spec[0], spec[2], spec[3]) for spec in fields)
    npositional = len(positional)
    all_names = frozenset(spec[0] for spec in fields)
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
            if post_init:
                self.__post_init__()
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
        if post_init:
            self.__post_init__()

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


def _make_frozen(home: list[Any], names: frozenset[str]) -> tuple[Any, Any]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is home[0] or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(home[0], self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is home[0] or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(home[0], self).__delattr__(name)

    return __setattr__, __delattr__


def _replace(self: Any, /, **changes: Any) -> Any:
    return dataclasses.replace(self, **changes)


def _make_state(names: tuple[str, ...]) -> tuple[Any, Any]:
    def __getstate__(self: Any) -> list[Any]:
        return [getattr(self, name) for name in names]

    def __setstate__(self: Any, state: list[Any]) -> None:
        for name, value in zip(names, state, strict=True):
            object.__setattr__(self, name, value)

    return __getstate__, __setstate__
