// Unit tests of evaluation semantics, one per feature, each citing the expr (or Go) behaviour
// it pins. Uses a small host object shaped like CrowdSec's event.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::{Arity, Compiler, EvalError, Object, Str, Value};

/// A tiny `types.Event`: Meta/Parsed are `map[string]string` (missing key reads ""),
/// Unmarshaled is `map[string]interface{}` and writable, `SetMeta` writes through a RefCell.
#[derive(Default)]
struct Event {
    meta: HashMap<String, String>,
    parsed: HashMap<String, String>,
    set_meta: RefCell<Vec<(String, String)>>,
    unmarshaled: Unmarshaled,
    json: serde_json::Value,
}

#[derive(Default)]
struct StrMap<'m>(Option<&'m HashMap<String, String>>);

impl Object for StrMap<'_> {
    fn type_name(&self) -> &str {
        "map[string]string"
    }
    fn has_key(&self, key: &str) -> Option<bool> {
        Some(self.0.is_some_and(|m| m.contains_key(key)))
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(self.0.and_then(|m| m.get(name)).map(|s| Value::str(s)).unwrap_or(Value::str("")))
    }
}

#[derive(Default)]
struct Unmarshaled(RefCell<serde_json::Map<String, serde_json::Value>>);

impl Object for Unmarshaled {
    fn type_name(&self) -> &str {
        "map[string]interface{}"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        // Interior mutability: reads copy out (a host may use an overlay instead).
        Some(self.0.borrow().get(name).map(|j| crate::builtins::json_to_value(j)).unwrap_or(Value::Nil))
    }
    fn set(&self, key: &str, value: &Value<'_>) -> Result<(), EvalError> {
        self.0.borrow_mut().insert(key.to_string(), value.to_json());
        Ok(())
    }
}

impl Event {
    fn meta_map(&self) -> &HashMap<String, String> {
        &self.meta
    }
}

impl Object for Event {
    fn type_name(&self) -> &str {
        "types.Event"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match name {
            "Meta" => Some(Value::Object(leak(StrMap(Some(self.meta_map()))))),
            "Parsed" => Some(Value::Object(leak(StrMap(Some(&self.parsed))))),
            "Unmarshaled" => Some(Value::Object(&self.unmarshaled)),
            "Json" => Some(Value::from_json(&self.json)),
            _ => None,
        }
    }
    fn call<'s>(&'s self, method: &str, args: &[Value<'s>]) -> Option<Result<Value<'s>, EvalError>> {
        match method {
            "GetMeta" => {
                let k = args.first().and_then(|a| a.as_str()).unwrap_or("");
                if let Some((_, v)) = self.set_meta.borrow().iter().rev().find(|(key, _)| key == k) {
                    return Some(Ok(Value::string(v.clone())));
                }
                Some(Ok(self.meta.get(k).map(|s| Value::str(s)).unwrap_or(Value::str(""))))
            }
            "SetMeta" => {
                let k = args.first().and_then(|a| a.as_str()).unwrap_or("").to_string();
                let v = args.get(1).and_then(|a| a.as_str()).unwrap_or("").to_string();
                self.set_meta.borrow_mut().push((k, v));
                Some(Ok(Value::Bool(true)))
            }
            _ => None,
        }
    }
}

/// Test-only: give a small view object a lifetime as long as the event's. (A real host keeps
/// such views inside the event; leaking a few bytes per test is fine.)
fn leak<'a>(m: StrMap<'a>) -> &'a StrMap<'a> {
    Box::leak(Box::new(m))
}

fn event() -> Event {
    let mut e = Event::default();
    e.meta.insert("log_type".into(), "http_access-log".into());
    e.meta.insert("http_path".into(), "/wp-login.php".into());
    e.meta.insert("source_ip".into(), "1.2.3.4".into());
    e.parsed.insert("message".into(), " {\"a\": 1} ".into());
    e.json = serde_json::json!({"user": {"name": "bob", "roles": ["a", "b"]}, "n": 3, "f": 1.5});
    e
}

fn run_with(src: &str, evt: &Event) -> Result<String, String> {
    let mut c = Compiler::new();
    c.var("evt");
    let p = c.compile(src).map_err(|e| format!("compile: {e}"))?;
    p.run(&[Value::Object(evt)]).map(|v| format!("{v:?}")).map_err(|e| e.to_string())
}

fn run(src: &str) -> String {
    let evt = event();
    run_with(src, &evt).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn fails(src: &str) -> String {
    let evt = event();
    match run_with(src, &evt) {
        Ok(v) => panic!("{src} should fail, gave {v}"),
        Err(e) => e,
    }
}

#[test]
fn arithmetic_promotes_int_to_float_like_expr() {
    assert_eq!(run("1 + 2"), "3");
    assert_eq!(run("1 + 2.5"), "3.5");
    // expr: `/` always divides as float64.
    assert_eq!(run("7 / 2"), "3.5");
    assert_eq!(run("7 % 3"), "1");
    assert_eq!(run("2 ** 10"), "1024.0");
    assert_eq!(run("-3 + +1"), "-2");
    assert!(fails("1 % 0").contains("divide by zero"));
    assert!(fails("1 + 'a'").contains("invalid operation"));
}

#[test]
fn string_concatenation_and_comparison() {
    assert_eq!(run("'a' + \"b\""), "\"ab\"");
    assert_eq!(run("'abc' < 'abd'"), "true");
    assert!(fails("'a' < 1").contains("invalid operation"));
}

#[test]
fn equality_across_kinds_is_false_not_an_error() {
    // expr's runtime.Equal: int and float compare numerically, other mixes are unequal.
    assert_eq!(run("1 == 1.0"), "true");
    assert_eq!(run("'1' == 1"), "false");
    assert_eq!(run("nil == nil"), "true");
    assert_eq!(run("nil == ''"), "false");
    assert_eq!(run("[1, 'a'] == [1, 'a']"), "true");
    assert_eq!(run("{a: 1} == {a: 1.0}"), "true");
    assert_eq!(run("true != false"), "true");
}

#[test]
fn logic_short_circuits_and_requires_bools() {
    // The right side would fail (`1 % 0`) if evaluated.
    assert_eq!(run("false && 1 % 0 == 0"), "false");
    assert_eq!(run("true || 1 % 0 == 0"), "true");
    assert_eq!(run("not false and !false"), "true");
    assert!(fails("1 && true").contains("expected bool"));
    assert!(fails("not 'x'").contains("expected bool"));
}

#[test]
fn ternary_and_coalesce() {
    assert_eq!(run("1 > 2 ? 'a' : 'b'"), "\"b\"");
    assert_eq!(run("nil ?? 'd'"), "\"d\"");
    assert_eq!(run("'' ?? 'd'"), "\"\"");
    assert_eq!(run("evt.Unmarshaled.nope ?? 'd'"), "\"d\"");
    assert!(fails("'x' ? 1 : 2").contains("expected bool"));
}

#[test]
fn in_on_lists_maps_and_negation() {
    assert_eq!(run("evt.Meta.log_type in ['http_access-log', 'http_error-log']"), "true");
    assert_eq!(run("evt.Meta.log_type not in ['x']"), "true");
    assert_eq!(run("2 in [1, 2.0]"), "true");
    assert_eq!(run("'a' in {a: 1}"), "true");
    assert_eq!(run("'b' in {a: 1}"), "false");
    assert_eq!(run("nil in ['', nil]"), "true");
    // Host maps answer `in` themselves (a missing Meta key reads "" but is not "in").
    assert_eq!(run("'log_type' in evt.Meta && !('nope' in evt.Meta)"), "true");
    assert_eq!(run("'nope' in evt.Unmarshaled"), "false");
    let x = "x";
    assert_eq!(run(&format!("'{x}' in ['a'] + ['x']")), "true");
}

#[test]
fn string_operators() {
    assert_eq!(run("evt.Meta.http_path contains 'login'"), "true");
    assert_eq!(run("evt.Meta.http_path startsWith '/wp'"), "true");
    assert_eq!(run("evt.Meta.http_path endsWith '.php'"), "true");
    assert_eq!(run("evt.Meta.http_path not endsWith '.php'"), "false");
    assert_eq!(run("evt.Meta.http_path matches '^/wp-.*\\\\.php$'"), "true");
    // A pattern computed at run time is compiled then.
    assert_eq!(run("evt.Meta.http_path matches ('^/wp' + '-')"), "true");
    assert!(fails("nil contains 'a'").contains("invalid operation"));
    let e = Compiler::new().compile("'a' matches '('").map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("invalid regular expression"), "{e}");
}

#[test]
fn missing_map_keys_read_as_zero_values() {
    // Go map[string]string → "", map[string]interface{} → nil, maps built in expr → nil.
    assert_eq!(run("evt.Meta.nothing"), "\"\"");
    assert_eq!(run("evt.Meta['nothing'] == ''"), "true");
    assert_eq!(run("evt.Unmarshaled.nothing"), "nil");
    assert_eq!(run("{a: 1}.b"), "nil");
    assert!(fails("evt.NoSuchField").contains("cannot fetch NoSuchField"));
    assert!(fails("evt.Unmarshaled.nothing.deeper").contains("cannot fetch deeper from nil"));
}

#[test]
fn optional_chaining_stops_at_nil() {
    assert_eq!(run("evt.Unmarshaled.nothing?.deeper.still"), "nil");
    assert_eq!(run("evt.Unmarshaled?.nothing?.deeper"), "nil");
    assert_eq!(run("evt.Json?.user.name"), "\"bob\"");
    assert_eq!(run("evt.Unmarshaled.nothing?.[0]"), "nil");
}

#[test]
fn indexes_and_slices() {
    assert_eq!(run("[1, 2, 3][0]"), "1");
    // expr allows negative indexes from the end.
    assert_eq!(run("[1, 2, 3][-1]"), "3");
    assert_eq!(run("[1, 2, 3, 4][1:3]"), "[2, 3]");
    assert_eq!(run("[1, 2, 3, 4][-2:]"), "[3, 4]");
    assert_eq!(run("[1, 2, 3, 4][:1]"), "[1]");
    assert_eq!(run("'hello'[1:3]"), "\"el\"");
    assert_eq!(run("evt.Json.user.roles[1]"), "\"b\"");
    assert_eq!(run("evt.Json['user']['name']"), "\"bob\"");
    assert!(fails("[1][5]").contains("out of range"));
}

#[test]
fn closures_with_pointer_and_field_shorthand() {
    assert_eq!(run("any([1, 2, 3], {# > 2})"), "true");
    assert_eq!(run("all([1, 2, 3], # > 0)"), "true");
    assert_eq!(run("none([1, 2, 3], {# > 5})"), "true");
    assert_eq!(run("one([1, 2, 3], {# == 2})"), "true");
    assert_eq!(run("filter([1, 2, 3, 4], {# % 2 == 0})"), "[2, 4]");
    assert_eq!(run("map([1, 2], {# * 10})"), "[10, 20]");
    assert_eq!(run("count([1, 2, 3], {# > 1})"), "2");
    assert_eq!(run("map([{a: 1}, {a: 2}], {.a})"), "[1, 2]");
    assert_eq!(run("map([{a: 1}, {a: 2}], {#.a + #index})"), "[1, 3]");
    assert_eq!(run("find([1, 2, 3], {# > 1})"), "2");
    assert_eq!(run("findIndex([1, 2, 3], {# > 1})"), "1");
    assert_eq!(run("reduce([1, 2, 3], {#acc + #}, 10)"), "16");
    assert_eq!(run("sum([1, 2, 3])"), "6");
    assert_eq!(run("sortBy([3, 1, 2], {#})"), "[1, 2, 3]");
    // Nested predicates: the inner # is the inner element.
    assert_eq!(run("any([[1, 2], [3]], {any(#, {# == 3})})"), "true");
    // The outer scope stays visible inside a predicate.
    assert_eq!(run("any(['login'], {evt.Meta.http_path contains #})"), "true");
    assert!(fails("any([1], {#})").contains("expected bool"));
}

#[test]
fn let_bindings() {
    assert_eq!(run("let x = 2; let y = x * 3; y + x"), "8");
    assert_eq!(run("let p = evt.Meta.http_path; any(['/wp'], {p startsWith #})"), "true");
}

#[test]
fn pipes_call_with_the_left_side_first() {
    assert_eq!(run("'a,b' | split(',') | len()"), "2");
}

#[test]
fn builtins_of_expr() {
    assert_eq!(run("len('héllo')"), "5");
    assert_eq!(run("len([1, 2]) + len({a: 1})"), "3");
    assert_eq!(run("int('42') + int(2.9)"), "44");
    assert_eq!(run("float('1.5')"), "1.5");
    assert_eq!(run("string(12)"), "\"12\"");
    assert_eq!(run("upper('a') + lower('B')"), "\"Ab\"");
    assert_eq!(run("trim('  a ')"), "\"a\"");
    assert_eq!(run("trimSuffix('a.php', '.php')"), "\"a\"");
    assert_eq!(run("split('a,b,c', ',')"), "[\"a\", \"b\", \"c\"]");
    assert_eq!(run("split('a,b,c', ',', 2)"), "[\"a\", \"b,c\"]");
    assert_eq!(run("join(['a', 'b'], '-')"), "\"a-b\"");
    assert_eq!(run("lastIndexOf('a/b/c', '/')"), "3");
    assert_eq!(run("hasSuffix('abc', 'c')"), "true");
    assert_eq!(run("max(1, 5, 3)"), "5");
    assert_eq!(run("abs(-2)"), "2");
    assert_eq!(run("first([7, 8]) + last([7, 8])"), "15");
    assert_eq!(run("get({a: 1}, 'b')"), "nil");
    assert_eq!(run("keys({a: 1})"), "[\"a\"]");
    assert_eq!(run("fromJSON('{\"a\": [1]}').a[0]"), "1.0");
    assert_eq!(run("toJSON({a: [1]})"), "\"{\\n  \\\"a\\\": [\\n    1\\n  ]\\n}\"");
    assert_eq!(run("1..3"), "[1, 2, 3]");
    assert!(fails("int('x')").contains("int"));
    assert!(fails("len(1)").contains("len"));
}

#[test]
fn durations_and_times() {
    assert_eq!(run("duration('1h') > duration('20m')"), "true");
    assert_eq!(run("duration('1h30m').Minutes()"), "90.0");
    assert_eq!(run("string(duration('90s'))"), "\"1m30s\"");
    let mut c = Compiler::new();
    c.var("t");
    let ts: jiff::Timestamp = "2024-06-01T22:30:00Z".parse().unwrap();
    let t = Value::Time(crate::Time::utc(ts));
    let eval = |src: &str| format!("{:?}", c.compile(src).unwrap().run(std::slice::from_ref(&t)).unwrap());
    assert_eq!(eval("t.Hour()"), "22");
    // 2024-06-01 is a Saturday; Weekday() is Go's time.Weekday with String().
    assert_eq!(eval("t.Weekday().String()"), "\"Saturday\"");
    assert_eq!(eval("t.Weekday() == 6"), "true");
    assert_eq!(eval("(t + duration('2h')).Hour()"), "0");
    assert_eq!(eval("(t + duration('2h')) - t"), "7200000000000ns");
    assert_eq!(eval("t.Unix()"), "1717281000");
}

#[test]
fn methods_and_mutation_through_the_host() {
    let evt = event();
    assert_eq!(run_with("evt.GetMeta('source_ip')", &evt).unwrap(), "\"1.2.3.4\"");
    // CrowdSec's http-cve-probing: SetMeta inside `any`, read back later by the host.
    let src = "any(['login'], { evt.Meta.http_path contains # ? evt.SetMeta('cve', #) : false })";
    assert_eq!(run_with(src, &evt).unwrap(), "true");
    assert_eq!(run_with("evt.GetMeta('cve')", &evt).unwrap(), "\"login\"");
    assert!(run_with("evt.Nope()", &evt).unwrap_err().contains("has no method Nope"));
}

#[test]
fn unknown_names_and_bad_arity_are_compile_errors_with_positions() {
    let mut c = Compiler::new();
    c.var("evt");
    let e = c.compile("evt.Meta.x == 'a' &&\n  Nope(evt)").map(|_| ()).unwrap_err();
    assert_eq!((e.line, e.column), (2, 3));
    assert!(e.to_string().contains("unknown function \"Nope\""), "{e}");
    let e = c.compile("foo == 1").map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("unknown name \"foo\""), "{e}");
    let e = c.compile("lower('a', 'b')").map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("lower() takes 1 argument(s), 2 given"), "{e}");
    let e = c.compile("len()").map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("len() takes 1"), "{e}");
}

#[test]
fn registered_functions_can_return_borrowed_data() {
    struct FileFn(Vec<String>);
    impl crate::Function for FileFn {
        fn call<'a>(&'a self, _: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
            Ok(Value::List(crate::List::Strings(&self.0)))
        }
    }
    let mut c = Compiler::new();
    c.var("evt");
    c.register("File", Arity::exact(1), FileFn(vec!["/etc/passwd".into(), "login".into()]));
    c.register_fn("Twice", Arity::exact(1), |a| Ok(Value::Int(2 * if let Value::Int(i) = a[0] { i } else { 0 })));
    let evt = event();
    let p = c.compile("any(File('x'), { evt.Meta.http_path contains # }) && Twice(2) == 4").unwrap();
    assert_eq!(p.run(&[Value::Object(&evt)]).unwrap().as_bool(), Some(true));
    // A registered function overrides an expr builtin of the same name.
    c.register_fn("upper", Arity::exact(1), |_| Ok(Value::str("overridden")));
    assert_eq!(c.compile("upper('a')").unwrap().run(&[]).unwrap().as_str(), Some("overridden"));
}

#[test]
fn run_bool_requires_a_bool() {
    let c = Compiler::new();
    assert!(c.compile("1 == 1").unwrap().run_bool(&[]).unwrap());
    assert!(c.compile("'x'").unwrap().run_bool(&[]).is_err());
}

#[test]
fn values_format_like_go() {
    let v = Value::map(vec![(Str::from("b"), Value::Int(1)), (Str::from("a"), Value::list(vec![Value::Float(1.5), Value::Nil]))]);
    assert_eq!(v.to_string(), "map[a:[1.5 <nil>] b:1]");
}

#[test]
fn if_else_statement() {
    // expr's `if c { a } else { b }`, as http-technology-probing uses it with a `let` inside.
    assert_eq!(run("if 1 > 2 { 'a' } else if true { let x = 'b'; x } else { 'c' }"), "\"b\"");
}

#[test]
fn long_or_chains_do_not_recurse_per_operand() {
    // A sigma-generated hub scenario has 976 `||` in one filter; 5000 must compile and run on
    // a test thread's default stack.
    let src = (0..5000).map(|i| format!("evt.Meta.http_path contains 'x{i}'")).collect::<Vec<_>>().join(" || ");
    assert_eq!(run(&src), "false");
    assert_eq!(run(&format!("{src} || evt.Meta.http_path contains 'login'")), "true");
}

#[test]
fn json_numbers_are_float64_like_go() {
    // encoding/json decodes every number into float64; expr compares float and int by value.
    assert_eq!(run("evt.Json.n"), "3.0");
    assert_eq!(run("evt.Json.n == 3 && string(evt.Json.n) == '3'"), "true");
    assert_eq!(run("Sprintf('%v|%d', evt.Json.f, evt.Json.n)"), "\"1.5|%!d(float64=3)\"");
}


#[test]
fn leading_string_test_names_the_gate_of_a_filter_and_only_when_it_is_first() {
    let mut c = Compiler::new();
    let slot = c.var("evt");
    let gate = |src: &str| c.compile(src).unwrap().leading_string_test(slot);
    let meta = vec!["Meta".to_string(), "log_type".to_string()];
    assert_eq!(
        gate("evt.Meta.log_type == 'ssh_failed-auth'"),
        Some((meta.clone(), vec!["ssh_failed-auth".to_string()]))
    );
    assert_eq!(
        gate("evt.Meta.log_type in ['a', 'b'] && evt.Meta.service == 'http' && 1/0 == 1"),
        Some((meta.clone(), vec!["a".to_string(), "b".to_string()]))
    );
    // Not first, negated, not all strings, or under `||`: no gate (the rest could run
    // first, with effects or errors of its own).
    assert_eq!(gate("evt.Meta.x == 'y' && evt.Meta.log_type == 'a'").unwrap().0[1], "x");
    assert_eq!(gate("1 == 1 && evt.Meta.log_type == 'a'"), None);
    assert_eq!(gate("evt.Meta.log_type != 'a'"), None);
    assert_eq!(gate("evt.Meta.log_type in ['a', 1]"), None);
    assert_eq!(gate("evt.Meta.log_type == 'a' || true"), None);
    // The promise itself: outside the set the program is false without evaluating the rest
    // (here a division by zero that would fail).
    let evt = event();
    let p = c.compile("evt.Meta.log_type in ['x', 'y'] && 1 % 0 == 1").unwrap();
    assert_eq!(p.run_bool(&[Value::Object(&evt)]), Ok(false));
    let p = c.compile("evt.Meta.log_type in ['http_access-log'] && 1 % 0 == 1").unwrap();
    assert!(p.run_bool(&[Value::Object(&evt)]).is_err());
}
