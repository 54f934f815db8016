//! Tests of the helpers through the expression engine, as hub expressions call them.

use std::cell::RefCell;

use crate::{Compiler, EvalError, Object, Value};

/// A writable `map[string]interface{}` like `evt.Unmarshaled`.
#[derive(Default)]
struct Target(RefCell<Vec<(String, Value<'static>)>>);

impl Object for Target {
    fn type_name(&self) -> &str {
        "map[string]interface{}"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(
            self.0
                .borrow()
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Nil),
        )
    }
    fn set(&self, key: &str, value: &Value<'_>) -> Result<(), EvalError> {
        let mut m = self.0.borrow_mut();
        m.retain(|(k, _)| k != key);
        m.push((key.to_string(), value.clone().into_owned()));
        Ok(())
    }
}

fn eval(src: &str, target: &Target) -> Result<String, String> {
    let mut c = Compiler::new();
    c.var("m");
    let p = c.compile(src).map_err(|e| e.to_string())?;
    p.run(&[Value::Object(target)])
        .map(|v| format!("{v:?}"))
        .map_err(|e| e.to_string())
}

fn run(src: &str) -> String {
    eval(src, &Target::default()).unwrap_or_else(|e| panic!("{src}: {e}"))
}

#[test]
fn string_helpers() {
    assert_eq!(run("Upper('aé') + Lower('B')"), "\"AÉb\"");
    // Go's simple case mapping: ß has no one-rune upper case and stays.
    assert_eq!(run("Upper('straße')"), "\"STRAßE\"");
    assert_eq!(run("TrimSpace('  x ')"), "\"x\"");
    assert_eq!(
        run("TrimPrefix('/a/b', '/a') + TrimSuffix('x.php', '.php')"),
        "\"/bx\""
    );
    assert_eq!(run("Split('a,b', ',')"), "[\"a\", \"b\"]");
    assert_eq!(run("Sprintf('%s:%d', 'a', 1)"), "\"a:1\"");
    assert_eq!(run("ToString(1) + ToString('x')"), "\"x\"");
    assert_eq!(run("Atof('1.5') + Atof('nope')"), "1.5");
    assert_eq!(
        run("Match('*.php', 'index.php') && !Match('a?c', 'abbc')"),
        "true"
    );
    assert_eq!(
        run("basename('/var/log/nginx/access.log')"),
        "\"access.log\""
    );
    assert_eq!(run("FloatApproxEqual(1.0000001, 1.0)"), "true");
    assert_eq!(run("Get(['a', 'b'], 5)"), "\"\"");
    assert_eq!(run("B64Decode('Zm9v')"), "\"foo\"");
    assert_eq!(run("Fields(' a  b ')"), "[\"a\", \"b\"]");
}

#[test]
fn json_helpers() {
    let blob = r#"'{"uri": "/a", "cve": "CVE-1", "n": [1, 2], "o": {"k": "v"}}'"#;
    assert_eq!(run(&format!("JsonExtract({blob}, 'uri')")), "\"/a\"");
    assert_eq!(run(&format!("JsonExtract({blob}, 'n[1]')")), "\"2\"");
    assert_eq!(
        run(&format!("JsonExtractUnescape({blob}, 'cve')")),
        "\"CVE-1\""
    );
    assert_eq!(run(&format!("JsonExtractSlice({blob}, 'n')")), "[1.0, 2.0]");
    assert_eq!(run(&format!("JsonExtractObject({blob}, 'o').k")), "\"v\"");
    assert_eq!(run(&format!("JsonExtract({blob}, 'missing')")), "\"\"");
    assert_eq!(
        run("ToJsonString({b: 1, a: 'x'})"),
        r#""{\"a\":\"x\",\"b\":1}""#
    );
}

#[test]
fn unmarshal_json_writes_into_the_host_map() {
    let t = Target::default();
    let r = eval(
        r#"UnmarshalJSON('{"status": 200, "u": {"name": "bob"}}', m, 'traefik') in ['', nil]"#,
        &t,
    );
    assert_eq!(r.unwrap(), "true");
    assert_eq!(eval("m.traefik.u.name", &t).unwrap(), "\"bob\"");
    assert_eq!(eval("m.traefik.status == 200", &t).unwrap(), "true");
    assert!(
        eval("UnmarshalJSON('{bad', m, 'x')", &t)
            .unwrap_err()
            .contains("UnmarshalJSON")
    );
}

#[test]
fn parse_kv_merges_into_the_host_map() {
    let t = Target::default();
    assert_eq!(
        eval(r#"ParseKV('a=1 b="x y"', m, 'kv') == nil"#, &t).unwrap(),
        "true"
    );
    assert_eq!(eval("ParseKV('c=3', m, 'kv')", &t).unwrap(), "nil");
    assert_eq!(
        eval("[m.kv.a, m.kv.b, m.kv.c]", &t).unwrap(),
        "[\"1\", \"x y\", \"3\"]"
    );
    assert!(
        eval("ParseKV('nothing', m, 'kv')", &t)
            .unwrap_err()
            .contains("invalid input format")
    );
    assert_eq!(
        eval(
            "ParseKVLax('msg=two words x=1', m, 'lax') == nil && m.lax.msg == 'two words'",
            &t
        )
        .unwrap(),
        "true"
    );
}

#[test]
fn ip_and_url_helpers() {
    assert_eq!(
        run("IpInRange('1.2.3.4', '1.2.3.0/24') && !IpInRange('x', '1.2.3.0/24')"),
        "true"
    );
    assert_eq!(run("IpToRange('2001:db8::1', '/64')"), "\"2001:db8::/64\"");
    assert_eq!(
        run("[IsIP('::1'), IsIPV4('1.2.3.4'), IsIPV6('1.2.3.4')]"),
        "[true, true, false]"
    );
    assert_eq!(
        run("PathUnescape('/a%20b') + QueryUnescape('+x') + PathUnescape('%zz')"),
        "\"/a b x%zz\""
    );
    assert_eq!(run("ParseUri('/p?a=1&a=2&b=3').a"), "[\"1\", \"2\"]");
}

#[test]
fn xml_helpers() {
    let xml = "'<Event><System><Provider Name=\"P\"/></System><EventData><Data Name=\"Image\">x.exe</Data></EventData></Event>'";
    assert_eq!(
        run(&format!(
            "XMLGetNodeValue({xml}, \"/Event/EventData[1]/Data[@Name='Image']\")"
        )),
        "\"x.exe\""
    );
    assert_eq!(
        run(&format!(
            "XMLGetAttributeValue({xml}, '/Event/System[1]/Provider', 'Name')"
        )),
        "\"P\""
    );
    assert_eq!(run("XMLGetNodeValue('not xml', '/a')"), "\"\"");
}

#[test]
fn time_helpers() {
    let mut c = Compiler::new();
    c.var("q");
    let t = |s: &str| Value::Time(crate::Time::utc(s.parse().unwrap()));
    let q = Value::list(vec![
        t("2024-01-01T00:00:00Z"),
        t("2024-01-01T00:30:00Z"),
        t("2024-01-01T00:40:00Z"),
        t("2024-01-01T01:40:00Z"),
    ]);
    let p = c
        .compile("MedianInterval(map(q, {#})) >= duration('30m')")
        .unwrap();
    assert_eq!(
        p.run(std::slice::from_ref(&q)).unwrap().as_bool(),
        Some(true)
    );
    let p = c.compile("string(AverageInterval(q))").unwrap();
    assert_eq!(
        p.run(std::slice::from_ref(&q)).unwrap().as_str(),
        Some("33m20s")
    );
    assert_eq!(
        run("ParseUnix('1578127303.123')"),
        "\"2020-01-04T08:41:43Z\""
    );
    assert_eq!(run("ParseUnix('x')"), "\"\"");
    assert_eq!(run("len(TimeNow()) == 20"), "true");
}

#[test]
fn distance_and_lapi_stubs() {
    assert_eq!(
        run("int(Distance('48.8566', '2.3522', '51.5074', '-0.1278'))"),
        "343"
    );
    assert_eq!(run("Distance('0', '0', '1', '1')"), "0.0");
    assert_eq!(run("GetDecisionsCount('1.2.3.4')"), "0");
}
