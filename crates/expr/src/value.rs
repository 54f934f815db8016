//! The values an expression computes with, and the [`Object`] seam through which the host
//! (the CrowdSec engine) lends its own data — the event, its maps, overflows — to an evaluation.
//!
//! Owns: [`Value`] and its parts ([`Str`], [`List`], [`Map`], [`Time`]), conversions to and from
//! JSON. Does not own: printing (`format`), operators (`eval`, `ops`), helper functions.
//!
//! Values borrow from the host for the length of one evaluation (`'a`), so reading
//! `evt.Meta.log_type` and comparing it allocates nothing. Values made during evaluation
//! (`Lower(..)`, list literals) are reference counted with `Rc`: a value never crosses threads.

use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

use crate::EvalError;

/// A string: borrowed from the host or the program, or made during evaluation.
#[derive(Clone)]
pub enum Str<'a> {
    /// Borrowed from the host (a field of the event) or from the compiled program.
    Ref(&'a str),
    /// Made during this evaluation (`Lower(x)`, `a + b`).
    Rc(Rc<str>),
}

impl<'a> Str<'a> {
    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            Str::Ref(s) => s,
            Str::Rc(s) => s,
        }
    }
}

impl Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Str<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(s: &'a str) -> Self {
        Str::Ref(s)
    }
}

impl From<String> for Str<'_> {
    fn from(s: String) -> Self {
        Str::Rc(Rc::from(s))
    }
}

/// A list (Go slice): made during evaluation, or borrowed from the host.
#[derive(Clone)]
pub enum List<'a> {
    /// Made during evaluation (`[a, b]`, `map(..)`, `Split(..)`).
    Values(Rc<[Value<'a>]>),
    /// A host's list of strings (a data file loaded by `File(..)`), borrowed: no copy per call.
    Strings(&'a [String]),
    /// A JSON array the host owns (inside `evt.Unmarshaled`).
    Json(&'a [serde_json::Value]),
}

impl<'a> List<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            List::Values(v) => v.len(),
            List::Strings(v) => v.len(),
            List::Json(v) => v.len(),
        }
    }

    /// True when the list has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` (no negative indexes here; the evaluator resolves those).
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        match self {
            List::Values(v) => v.get(i).cloned(),
            List::Strings(v) => v.get(i).map(|s| Value::Str(Str::Ref(s.as_str()))),
            List::Json(v) => v.get(i).map(Value::from_json),
        }
    }

    /// The elements, in order.
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

impl<'a> From<Vec<Value<'a>>> for List<'a> {
    fn from(v: Vec<Value<'a>>) -> Self {
        List::Values(Rc::from(v))
    }
}

/// A map with string keys (Go `map[string]T`). Reading a missing key gives `nil`.
#[derive(Clone)]
pub enum Map<'a> {
    /// Made during evaluation (`{a: 1}`, `ParseKV`, `UnmarshalJSON`); insertion order kept.
    Values(Rc<Vec<(Str<'a>, Value<'a>)>>),
    /// A JSON object the host owns (inside `evt.Unmarshaled`).
    Json(&'a serde_json::Map<String, serde_json::Value>),
}

impl<'a> Map<'a> {
    /// The value at `key`, `None` when absent.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        match self {
            Map::Values(v) => v
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v.clone()),
            Map::Json(m) => m.get(key).map(Value::from_json),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        match self {
            Map::Values(v) => v.len(),
            Map::Json(m) => m.len(),
        }
    }

    /// True when the map has no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys and values (insertion order, or the JSON object's order).
    pub fn entries(&self) -> Vec<(Str<'a>, Value<'a>)> {
        match self {
            Map::Values(v) => v.as_ref().clone(),
            Map::Json(m) => m
                .iter()
                .map(|(k, v)| (Str::Ref(k.as_str()), Value::from_json(v)))
                .collect(),
        }
    }
}

impl<'a> From<Vec<(Str<'a>, Value<'a>)>> for Map<'a> {
    fn from(v: Vec<(Str<'a>, Value<'a>)>) -> Self {
        Map::Values(Rc::new(v))
    }
}

/// A Go `time.Time`: an instant plus the UTC offset it is shown in (`Hour()` reads local time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    /// The instant.
    pub ts: jiff::Timestamp,
    /// The offset the time is expressed in (Go's location, reduced to its offset).
    pub offset: jiff::tz::Offset,
}

impl Time {
    /// An instant shown in UTC.
    pub fn utc(ts: jiff::Timestamp) -> Self {
        Time {
            ts,
            offset: jiff::tz::Offset::UTC,
        }
    }

    /// Go's zero `time.Time` (`0001-01-01T00:00:00Z`), what an unset event time reads as.
    pub fn zero() -> Self {
        let ts =
            jiff::Timestamp::from_second(-62_135_596_800).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        Time::utc(ts)
    }

    /// The civil date and time in this time's offset.
    pub fn civil(&self) -> jiff::civil::DateTime {
        self.offset.to_datetime(self.ts)
    }
}

/// A value during evaluation.
///
/// Go's `interface{}` seen through expr: every operator checks kinds at run time the way
/// expr's runtime does (`1 == 1.0` is true, `"1" == 1` is false, `1 + "a"` is an error).
#[derive(Clone, Default)]
pub enum Value<'a> {
    /// `nil`.
    #[default]
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// Go `int` (64-bit).
    Int(i64),
    /// Go `float64`.
    Float(f64),
    /// Go `string`.
    Str(Str<'a>),
    /// Go slice.
    List(List<'a>),
    /// Go `map[string]T`.
    Map(Map<'a>),
    /// Go `time.Time`.
    Time(Time),
    /// Go `time.Duration`, in nanoseconds.
    Duration(i64),
    /// A host object lent for this evaluation (the event, an overflow, a map of the event).
    Object(&'a dyn Object),
    /// An object made during evaluation (by a helper or a method), reference counted.
    Shared(Rc<dyn Object + 'a>),
}

impl<'a> Value<'a> {
    /// A string value borrowed from `s`.
    pub fn str(s: &'a str) -> Self {
        Value::Str(Str::Ref(s))
    }

    /// A string value that owns its text.
    pub fn string(s: impl Into<String>) -> Self {
        Value::Str(Str::from(s.into()))
    }

    /// A list value made from `v`.
    pub fn list(v: Vec<Value<'a>>) -> Self {
        Value::List(List::from(v))
    }

    /// A map value made from `(key, value)` pairs.
    pub fn map(v: Vec<(Str<'a>, Value<'a>)>) -> Self {
        Value::Map(Map::from(v))
    }

    /// A borrowed view of JSON the host owns: scalars become scalars, arrays and objects
    /// become borrowed [`List::Json`] / [`Map::Json`]. Every number is a `Float`, as Go's
    /// `encoding/json` decodes into `interface{}` (what `evt.Unmarshaled` holds).
    pub fn from_json(v: &'a serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::str(s),
            serde_json::Value::Array(a) => Value::List(List::Json(a)),
            serde_json::Value::Object(m) => Value::Map(Map::Json(m)),
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The bool inside, if this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number inside as an `i64` (ints, and floats with no fraction).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 && f.is_finite() => Some(*f as i64),
            _ => None,
        }
    }

    /// The number inside as an `f64` (ints and floats).
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// True for `nil`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// The host object inside, borrowed or shared.
    pub fn as_object(&self) -> Option<&dyn Object> {
        match self {
            Value::Object(o) => Some(*o),
            Value::Shared(o) => Some(&**o),
            _ => None,
        }
    }

    /// Go's type name for error messages (`string`, `int`, `map`, the object's own name ...).
    pub fn type_name(&self) -> &str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
            Value::Time(_) => "time.Time",
            Value::Duration(_) => "time.Duration",
            Value::Object(o) => o.type_name(),
            Value::Shared(o) => o.type_name(),
        }
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(l) => f.debug_list().entries(l.iter()).finish(),
            Value::Map(m) => f.debug_map().entries(m.entries()).finish(),
            Value::Time(t) => write!(f, "{}", t.ts),
            Value::Duration(d) => write!(f, "{d}ns"),
            Value::Object(o) => write!(f, "<{}>", o.type_name()),
            Value::Shared(o) => write!(f, "<{}>", o.type_name()),
        }
    }
}

impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value<'_> {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value<'_> {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::str(s)
    }
}

impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::string(s)
    }
}

/// A host object: the event and everything reachable from it (`evt.Meta`, `evt.Overflow`,
/// `results[0].Overflow.Alert` ...), lent to one evaluation as [`Value::Object`].
///
/// Every method takes `&self`. A host that lets expressions mutate it (`evt.SetMeta(k, v)`,
/// `ParseKV(s, evt.Unmarshaled, "p")`) keeps the mutable part behind interior mutability
/// (`RefCell`, or an overlay it merges after the evaluation); reads that borrow (`&'a str`)
/// then come from the parts that do not change during an evaluation.
pub trait Object {
    /// The Go type's name, for error messages (`types.Event`, `map[string]string`).
    fn type_name(&self) -> &str;

    /// `obj.name` (and `obj?.name`). `None` means "no such field": an error for struct-like
    /// objects. A map-like object returns its zero value for a missing key instead
    /// (`Some(Value::str(""))` for Go's `map[string]string`, `Some(Value::Nil)` for
    /// `map[string]interface{}`), as Go does.
    fn field(&self, name: &str) -> Option<Value<'_>>;

    /// `obj[key]`. The default reads string keys through [`Object::field`]; list-like objects
    /// take `Value::Int` (negative indexes are resolved by the evaluator from `len`).
    fn index(&self, key: &Value<'_>) -> Option<Value<'_>> {
        key.as_str().and_then(|k| self.field(k))
    }

    /// `obj.Name(args...)`. `None` means "no such method" (an error naming the type);
    /// `Some(Err(..))` is the method's own failure.
    fn call<'s>(
        &'s self,
        method: &str,
        args: &[Value<'s>],
    ) -> Option<Result<Value<'s>, EvalError>> {
        let _ = (method, args);
        None
    }

    /// Store `value` at `key` (the write half of `ParseKV(s, evt.Unmarshaled, "prefix")` and
    /// `UnmarshalJSON(s, evt.Unmarshaled, "key")`). The default refuses.
    fn set(&self, key: &str, value: &Value<'_>) -> Result<(), EvalError> {
        let _ = value;
        Err(EvalError::Immutable {
            type_name: self.type_name().to_string(),
            key: key.to_string(),
        })
    }

    /// Whether a map-like object has `key` (`"k" in obj`, `KeyExists`). `None` (the default)
    /// lets the evaluator decide from [`Object::to_value`], else from [`Object::field`]
    /// giving a non-nil value. Map-like objects whose `field` returns a zero value for missing
    /// keys (`map[string]string` gives `""`) should answer here.
    fn has_key(&self, key: &str) -> Option<bool> {
        let _ = key;
        None
    }

    /// This object seen as a plain value, when it is list- or map-like: used by `len`, `in`,
    /// iteration (`any(obj, ..)`), `==`, `toJSON`, `%v`. `None` for opaque objects.
    fn to_value(&self) -> Option<Value<'_>> {
        None
    }
}

impl fmt::Debug for dyn Object + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.type_name())
    }
}

impl AsRef<str> for Str<'_> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}
