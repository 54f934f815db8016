//! Typed errors: [`CompileError`] (with line and column, for `shield check`) and [`EvalError`]
//! (a run-time failure of one evaluation). Owns nothing else.

use thiserror::Error;

/// An expression that does not compile, with where and why.
///
/// Displays as `line:column: message` (1-based), so a caller that knows the file and the
/// line the expression starts on can print `file:line:col: message`.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{line}:{column}: {kind}")]
pub struct CompileError {
    /// 1-based line within the expression source.
    pub line: u32,
    /// 1-based column (in characters) within that line.
    pub column: u32,
    /// Byte offset within the expression source.
    pub offset: usize,
    /// What is wrong.
    pub kind: CompileErrorKind,
}

/// What is wrong with an expression.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum CompileErrorKind {
    /// The text does not parse: `found` is what was there, `expected` what could have been.
    #[error("syntax error: expected {expected}, found {found}")]
    Syntax {
        /// What the parser could have accepted here.
        expected: String,
        /// What it found (a token, or "end of expression").
        found: String,
    },
    /// A string or number literal that is malformed.
    #[error("bad literal: {0}")]
    Literal(String),
    /// A name that is neither a declared variable, a `let` binding nor a function.
    #[error("unknown name {0:?}: declare it as a variable, or check the spelling")]
    UnknownIdentifier(String),
    /// A call to a function that is not registered.
    #[error("unknown function {0:?}: it is not an expr builtin nor a registered helper")]
    UnknownFunction(String),
    /// A call with the wrong number of arguments.
    #[error("{name}() takes {expected} argument(s), {got} given")]
    Arity {
        /// The function.
        name: String,
        /// A description such as `2`, `1 to 3`, `at least 1`.
        expected: String,
        /// How many the call gives.
        got: usize,
    },
    /// A constant regular expression (right of `matches`) that does not compile.
    #[error("invalid regular expression {pattern:?}: {message}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The regex engine's message.
        message: String,
    },
    /// `#`, `#index` or `.field` shorthand used outside a predicate `{ ... }`.
    #[error("{0} is only allowed inside a predicate such as any(list, {{ # > 1 }})")]
    OutsidePredicate(String),
}

/// A run-time failure while evaluating a program against one environment.
///
/// CrowdSec treats a failing filter as "does not match" and logs it; these messages say what
/// went wrong and on which kinds of values.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum EvalError {
    /// An operator applied to values it does not accept (`1 + "a"`, `"a" < 1`).
    #[error("invalid operation: {left} {op} {right}")]
    Operator {
        /// The operator as written.
        op: &'static str,
        /// Type of the left operand (or the only one).
        left: String,
        /// Type of the right operand (empty for unary operators).
        right: String,
    },
    /// A boolean was required (`and`, `or`, `not`, `?:`, a predicate) and something else came.
    #[error("expected bool in {context}, got {got}")]
    NotBool {
        /// Where a bool was required.
        context: &'static str,
        /// The type that came instead.
        got: String,
    },
    /// `x.name` on a value that has no such field.
    #[error("cannot fetch {field} from {type_name}")]
    NoField {
        /// Type of `x`.
        type_name: String,
        /// The field.
        field: String,
    },
    /// `x.Name(..)` on a value that has no such method.
    #[error("type {type_name} has no method {method}")]
    NoMethod {
        /// Type of `x`.
        type_name: String,
        /// The method.
        method: String,
    },
    /// `x[i]` with an index out of range.
    #[error("index out of range: {index} (length {len})")]
    IndexOutOfRange {
        /// The index as given.
        index: i64,
        /// The length of the list.
        len: usize,
    },
    /// Integer division or modulo by zero.
    #[error("integer divide by zero")]
    DivideByZero,
    /// A regular expression built at run time (`x matches y` with `y` not constant) is invalid.
    #[error("invalid regular expression {pattern:?}: {message}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The regex engine's message.
        message: String,
    },
    /// A write into an object that does not accept it.
    #[error("cannot set {key:?} on {type_name}: it is read-only")]
    Immutable {
        /// Type of the object.
        type_name: String,
        /// The key.
        key: String,
    },
    /// A function or method failed (wrong argument types, bad input).
    #[error("{name}: {message}")]
    Function {
        /// The function or method name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

impl EvalError {
    /// A failure of function `name`, as helpers registered by the host report it.
    pub fn function(name: &str, message: impl Into<String>) -> Self {
        EvalError::Function {
            name: name.to_string(),
            message: message.into(),
        }
    }
}
