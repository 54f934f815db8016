//! CrowdSec's expression language: the Go [expr](https://expr-lang.org) language as CrowdSec's
//! hub uses it in `filter`, `groupby`, `distinct`, statics `expression`, whitelists, scenario
//! conditions and the hub tests' `parser.assert` / `scenario.assert` lines.
//!
//! Owns: lexing, parsing, name resolution (compile once), evaluation with expr's run-time
//! semantics, expr's builtins (`len`, `any`, `filter`, `map`, `upper`, `duration` ...) and
//! CrowdSec's *pure* helpers (`Upper`, `JsonExtract`, `IpInRange`, `ParseKV`, `Sprintf` ...).
//! Does not own: anything that reads files or engine state (`File`, `RegexpInFile`,
//! `GetFromStash`, `LookupFile`, GeoIP ...): the CrowdSec engine registers those through
//! [`Compiler::register`].
//!
//! # Use
//!
//! ```
//! use shield_expr::{Compiler, Value};
//!
//! let mut compiler = Compiler::new();     // expr builtins + CrowdSec's pure helpers
//! let evt = compiler.var("evt");          // slot 0: the value passed first to `run`
//! assert_eq!(evt, 0);
//! let program = compiler.compile("Upper(evt) startsWith 'GET'").unwrap();
//! let result = program.run(&[Value::str("get /index.html")]).unwrap();
//! assert_eq!(result.as_bool(), Some(true));
//! ```
//!
//! * A [`Program`] is compiled once (`Send + Sync`, shareable through `Arc`) and evaluated many
//!   times with [`Program::run`] against the values of the declared variables. Evaluation does
//!   not re-parse; constant regexes (`x matches 'lit'`) are compiled at compile time.
//! * The host lends its data as [`Value::Object`] (`&dyn Object`): field access `evt.Meta`,
//!   indexing `evt.Meta["x"]`, methods `evt.GetMeta("x")` and writes (`Object::set`) all go
//!   through the [`Object`] trait. Strings read from the host are borrowed, so a typical filter
//!   (field reads, string compares, `in` a constant list, `matches`) allocates nothing.
//! * Functions are registered by name with an [`Arity`]; unknown names and wrong argument
//!   counts are [`CompileError`]s with line and column.
//! * Mutation (`evt.SetMeta(k, v)`, `ParseKV(s, evt.Unmarshaled, "p")`,
//!   `UnmarshalJSON(s, evt.Unmarshaled, "k")`) goes through `&self` methods of [`Object`]
//!   ([`Object::call`], [`Object::set`]): the host keeps what expressions may change behind
//!   interior mutability (a `RefCell`, or an overlay merged after the evaluation), and the rest
//!   borrowed. A value read from a host map lives no longer than the evaluation.
//!
//! # Semantics (expr's, checked against expr-lang/expr and CrowdSec's `pkg/exprhelpers`)
//!
//! * `==`/`!=` never fail: values of different kinds are unequal, except int and float,
//!   which compare numerically (`1 == 1.0`); `nil == nil`.
//! * Arithmetic promotes int to float when either side is a float; `/` always gives a float;
//!   `%` needs ints; `+` concatenates strings (and lists); `**` / `^` give a float.
//! * `and`/`&&`, `or`/`||` short-circuit and need bools; `??` gives the right side when the left
//!   is nil; `a?.b` is nil when `a` is nil.
//! * `in` / `not in`: element of a list, key of a map ([`Object::has_key`] for host maps);
//!   `contains`, `startsWith`, `endsWith` on strings (anything else is an error, nil too);
//!   `matches` is RE2 with Go's ASCII `\d \w \s \b` ([`go_regex`]).
//! * JSON numbers are float64 ([`Value::from_json`]), as Go decodes `evt.Unmarshaled`.
//! * Limits: trees deeper than 256 levels do not compile (a chain of one logical operator
//!   counts once, so generated 1000-way `||` filters do).
//! * Missing map keys read as the zero value (`nil` for maps the expression built or JSON, what
//!   the host returns for its own maps, e.g. `""` for `evt.Meta`).

mod builtins;
mod compile;
mod error;
mod eval;
mod format;
pub mod helpers;
mod ops;
mod parse;
mod re;
mod value;

pub use builtins::parse_go_duration;
pub use error::{CompileError, CompileErrorKind, EvalError};
pub use format::go_duration;
pub use re::{go_regex, go_to_rust};
pub use value::{List, Map, Object, Str, Time, Value};

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A function callable from expressions, registered by name with [`Compiler::register`].
///
/// `call` borrows `self` for the evaluation, so a function may return data it owns without
/// copying it (`File("x")` can return [`List::Strings`] borrowed from its loaded data files).
pub trait Function: Send + Sync {
    /// Call with the evaluated arguments (their number already checked against the
    /// [`Arity`] at compile time).
    fn call<'a>(&'a self, args: &[Value<'a>]) -> Result<Value<'a>, EvalError>;
}

/// A [`Function`] made from a closure; see [`Compiler::register_fn`].
pub struct FnFunction<F>(pub F);

impl<F> Function for FnFunction<F>
where
    F: for<'a> Fn(&[Value<'a>]) -> Result<Value<'a>, EvalError> + Send + Sync,
{
    fn call<'a>(&'a self, args: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
        (self.0)(args)
    }
}

/// How many arguments a function takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arity {
    /// Fewest arguments.
    pub min: usize,
    /// Most arguments; `None` for variadic functions (`Sprintf`).
    pub max: Option<usize>,
}

impl Arity {
    /// Exactly `n` arguments.
    pub const fn exact(n: usize) -> Self {
        Arity {
            min: n,
            max: Some(n),
        }
    }

    /// From `min` to `max` arguments.
    pub const fn range(min: usize, max: usize) -> Self {
        Arity {
            min,
            max: Some(max),
        }
    }

    /// `min` or more arguments.
    pub const fn at_least(min: usize) -> Self {
        Arity { min, max: None }
    }

    /// True when `n` arguments are accepted.
    pub fn accepts(&self, n: usize) -> bool {
        n >= self.min && self.max.is_none_or(|m| n <= m)
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            Some(m) if m == self.min => write!(f, "{m}"),
            Some(m) => write!(f, "{} to {m}", self.min),
            None => write!(f, "at least {}", self.min),
        }
    }
}

/// A registered function: its arity and implementation.
#[derive(Clone)]
pub(crate) struct FunctionDef {
    pub(crate) arity: Arity,
    pub(crate) func: Arc<dyn Function>,
    /// Same arguments, same result, no side effect: called at compile time when every
    /// argument is a constant (see [`Compiler::pure`]).
    pub(crate) pure: bool,
}

/// What expressions may name: variables (by slot) and functions. Compiles [`Program`]s.
///
/// Cheap to clone: build one with every helper registered, then clone it per context to
/// declare that context's variables (`evt` for filters, `queue`/`leaky` for conditions,
/// `results` for hub test assertions).
#[derive(Clone)]
pub struct Compiler {
    vars: Vec<String>,
    functions: HashMap<String, FunctionDef>,
}

impl Default for Compiler {
    fn default() -> Self {
        Compiler::new()
    }
}

impl Compiler {
    /// A compiler that knows CrowdSec's pure helpers (`Upper`, `JsonExtract`, `IpInRange` ...).
    /// expr's own builtins (`len`, `any`, `upper` ...) are always known.
    pub fn new() -> Self {
        let mut c = Compiler::bare();
        helpers::register(&mut c);
        c
    }

    /// A compiler that knows only expr's builtins.
    pub fn bare() -> Self {
        Compiler {
            vars: Vec::new(),
            functions: HashMap::new(),
        }
    }

    /// Declare a variable and return its slot: [`Program::run`] takes the variables' values
    /// in slot order. Declaring a name twice returns the first slot.
    pub fn var(&mut self, name: &str) -> usize {
        if let Some(i) = self.vars.iter().position(|v| v == name) {
            return i;
        }
        self.vars.push(name.to_string());
        self.vars.len() - 1
    }

    /// The declared variables, in slot order.
    pub fn vars(&self) -> &[String] {
        &self.vars
    }

    /// Register (or replace) a function under `name`.
    pub fn register(
        &mut self,
        name: &str,
        arity: Arity,
        func: impl Function + 'static,
    ) -> &mut Self {
        self.functions.insert(
            name.to_string(),
            FunctionDef {
                arity,
                func: Arc::new(func),
                pure: false,
            },
        );
        self
    }

    /// Declare the registered function `name` pure: the same arguments always give the same
    /// result and calling it changes nothing (`Upper`, or `File` once its files are loaded).
    /// A call to it whose arguments are all constants is then made once, at compile time,
    /// and `any(F(..), {X contains #})` over the constant list it returns becomes one
    /// automaton. A call that fails at compile time is left to fail at run time. Returns
    /// false when no function of that name is registered.
    pub fn pure(&mut self, name: &str) -> bool {
        match self.functions.get_mut(name) {
            Some(def) => {
                def.pure = true;
                true
            }
            None => false,
        }
    }

    /// Register a closure: `compiler.register_fn("Double", Arity::exact(1), |a| ...)`.
    pub fn register_fn<F>(&mut self, name: &str, arity: Arity, f: F) -> &mut Self
    where
        F: for<'a> Fn(&[Value<'a>]) -> Result<Value<'a>, EvalError> + Send + Sync + 'static,
    {
        self.register(name, arity, FnFunction(f))
    }

    /// True when `name` is a registered function or an expr builtin.
    pub fn knows_function(&self, name: &str) -> bool {
        self.functions.contains_key(name)
            || builtins::Builtin::from_name(name).is_some()
            || builtins::ClosureOp::from_name(name).is_some()
    }

    /// The registered functions' names (not expr's builtins), sorted.
    pub fn function_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.functions.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Compile `source` once; evaluate the result many times.
    pub fn compile(&self, source: &str) -> Result<Program, CompileError> {
        let ast = parse::parse(source)?;
        let root = compile::Lowerer::new(self, source).lower(&ast)?;
        Ok(Program {
            source: Arc::from(source),
            root,
        })
    }
}

/// A compiled expression: `Send + Sync`, evaluated any number of times, from any thread.
pub struct Program {
    source: Arc<str>,
    root: compile::Node,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("source", &self.source)
            .finish()
    }
}

impl Program {
    /// The source text it was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate with `vars[i]` as the value of the variable in slot `i` (see
    /// [`Compiler::var`]). A variable with no value given reads as `nil`.
    pub fn run<'a>(&'a self, vars: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
        let ctx = eval::Ctx { vars };
        match eval::eval(&self.root, &ctx, None) {
            Ok(v) => Ok(v),
            Err(eval::Fail::Err(e)) => Err(*e),
            // An optional chain outside any Chain node cannot happen; nil is its value.
            Err(eval::Fail::NilChain) => Ok(Value::Nil),
        }
    }

    /// A test that gates the whole program: when it is `P == 'c'`, `P in ['a', 'b', ..]`, or
    /// either as the first operand of a top-level `&&` chain, with `P` a constant path
    /// `var.a.b` on variable `slot`, gives `P`'s field names and the strings `P` must equal.
    /// That test is evaluated first and reading `P` writes nothing, so whenever `P` reads as a
    /// string outside the set the program gives `Ok(false)` and evaluates nothing else: a
    /// caller may skip running it (CrowdSec's `evt.Meta.log_type in [..] && ..` filters).
    pub fn leading_string_test(&self, slot: usize) -> Option<(Vec<String>, Vec<String>)> {
        let first = match &self.root {
            compile::Node::And(items) => items.first()?,
            n => n,
        };
        let (left, values) = match first {
            compile::Node::EqConst {
                left,
                c: compile::Const::Str(c),
                negate: false,
            } => (left, vec![c.to_string()]),
            compile::Node::InConsts { left, items, .. } => {
                let mut v = Vec::with_capacity(items.len());
                for c in items.iter() {
                    let compile::Const::Str(c) = c else {
                        return None;
                    };
                    v.push(c.to_string());
                }
                (left, v)
            }
            _ => return None,
        };
        match &**left {
            compile::Node::Path { slot: s, names } if *s == slot => {
                Some((names.iter().map(|n| n.to_string()).collect(), values))
            }
            _ => None,
        }
    }

    /// Evaluate and require a bool, as CrowdSec does for `filter`, `condition` and
    /// whitelist expressions.
    pub fn run_bool<'a>(&'a self, vars: &[Value<'a>]) -> Result<bool, EvalError> {
        match self.run(vars)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError::NotBool {
                context: "program result",
                got: other.type_name().to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Program>();
        check::<Compiler>();
    }
}

#[cfg(test)]
mod tests_eval {
    include!("tests.rs");
}
