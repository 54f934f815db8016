//! Compile-time specialisation (pure calls folded, `any(F(..), {X op #})` as one automaton,
//! `x in` many constants as a hash set) gives exactly what the generic evaluation gives: the
//! same expressions are compiled twice, once with the list helper declared pure and once not,
//! and run over the same inputs, errors included.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use shield_expr::{Arity, Compiler, List, Value};

static WORDS: &[&str] = &[
    "/.env",
    "/wp-login.php",
    "union select",
    "<script",
    "../",
    "admin",
    "ADMIN",
    "Straße",
    "",
];

fn words() -> &'static [String] {
    static W: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    W.get_or_init(|| WORDS.iter().map(|s| s.to_string()).collect())
}

fn patterns() -> &'static [String] {
    static P: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        [
            r"^/wp-[a-z]+\.php$",
            r"(?i)union\s+select",
            r"\.\./",
            r"^admin$",
            r"[[:digit:]]{3}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    })
}

fn compiler(pure: bool, calls: Arc<AtomicUsize>) -> Compiler {
    let mut c = Compiler::new();
    c.var("x");
    c.var("y");
    c.register_fn("L", Arity::exact(1), move |a| {
        calls.fetch_add(1, Ordering::Relaxed);
        Ok(match a.first().and_then(Value::as_str) {
            Some("words") => Value::List(List::Strings(words())),
            Some("none") => Value::List(List::Strings(&[])),
            Some("patterns") => Value::List(List::Strings(patterns())),
            _ => Value::Nil,
        })
    });
    if pure {
        assert!(c.pure("L"));
    }
    c
}

/// (specialised, generic reference, value of `y` for both). The reference reads the constant
/// from `y` where the specialised one folds it, so nothing of it is evaluated at compile time.
const EXPRS: &[(&str, &str, &str)] = &[
    ("any(L('words'), {x contains #})", "", ""),
    ("any(L('words'), {x startsWith #})", "", ""),
    ("any(L('words'), {x endsWith #})", "", ""),
    ("any(L('words'), {x == #})", "", ""),
    ("any(L('words'), {# == x})", "", ""),
    ("none(L('words'), {x contains #})", "", ""),
    ("any(L('words'), {Upper(x) contains Upper(#)})", "", ""),
    ("any(L('words'), {Lower(x) == Lower(#)})", "", ""),
    ("any(L('words'), {Upper(x) matches Upper(#)})", "", ""),
    ("any(L('patterns'), {x matches #})", "", ""),
    ("any(L('patterns'), {Upper(x) matches Upper(#)})", "", ""),
    ("any(L('none'), {x contains #})", "", ""),
    ("none(L('none'), {x contains #})", "", ""),
    ("any(L('nothing'), {x contains #})", "", ""),
    ("x in L('words')", "", ""),
    (
        "x in ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', '/.env']",
        "x in ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', y]",
        "/.env",
    ),
    (
        "Upper(x) contains Upper('/wp-LOGIN')",
        "Upper(x) contains Upper(y)",
        "/wp-LOGIN",
    ),
    (
        "Upper(x) == Upper('admin')",
        "Upper(x) == Upper(y)",
        "admin",
    ),
    (
        "Upper(x) matches Upper('^/w[p]-')",
        "Upper(x) matches Upper(y)",
        "^/w[p]-",
    ),
    (
        "Upper(x) matches Upper('(')",
        "Upper(x) matches Upper(y)",
        "(",
    ),
];

fn inputs() -> Vec<Value<'static>> {
    let mut v: Vec<Value<'static>> = [
        "",
        "/.env",
        "/index.php?q=1 UNION SELECT 2",
        "/a/../../etc/passwd",
        "GET /wp-login.php HTTP/1.1",
        "admin",
        "Admin",
        "straße",
        "STRASSE",
        "/x/.env.bak",
        "q",
        "<SCRIPT>alert(1)",
    ]
    .iter()
    .map(|s| Value::str(s))
    .collect();
    v.push(Value::Nil);
    v.push(Value::Int(3));
    v
}

fn outcome(r: Result<Value<'_>, shield_expr::EvalError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("err {e}"),
    }
}

#[test]
fn specialised_expressions_give_what_the_generic_walk_gives() {
    let fast_calls = Arc::new(AtomicUsize::new(0));
    let slow_calls = Arc::new(AtomicUsize::new(0));
    let fast = compiler(true, fast_calls.clone());
    let slow = compiler(false, slow_calls.clone());
    let mut compared = 0;
    for (src, reference, y) in EXPRS {
        let reference = if reference.is_empty() { src } else { reference };
        let f = fast.compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        let s = slow
            .compile(reference)
            .unwrap_or_else(|e| panic!("{reference}: {e}"));
        let before = fast_calls.load(Ordering::Relaxed);
        for x in inputs() {
            let vars = [x.clone(), Value::str(y)];
            let a = outcome(f.run(&vars));
            let b = outcome(s.run(&vars));
            assert_eq!(a, b, "{src} with x = {x:?}");
            compared += 1;
        }
        // The pure list helper was called while compiling, never while running.
        assert_eq!(
            fast_calls.load(Ordering::Relaxed),
            before,
            "{src}: L called at run time"
        );
    }
    assert!(slow_calls.load(Ordering::Relaxed) > 0);
    assert_eq!(compared, EXPRS.len() * inputs().len());
}

#[test]
fn a_folded_pattern_that_does_not_compile_fails_at_run_time_not_at_compile_time() {
    let c = compiler(true, Arc::new(AtomicUsize::new(0)));
    let p = c.compile("Upper(x) matches Upper('(')").unwrap();
    assert!(p.run(&[Value::str("a"), Value::Nil]).is_err());
    // A literal pattern that does not compile is still refused when compiling.
    assert!(c.compile("x matches '('").is_err());
}
