//! CrowdSec's XML helpers `XMLGetNodeValue(xml, path)` and `XMLGetAttributeValue(xml, path,
//! attr)`, with the subset of etree's path syntax the hub uses: `/A/B[1]/C[@Name='x']`, `*`,
//! `//` (any depth), `[n]`, `[@a]`, `[@a='v']`, `[tag]`, `[tag='v']`, `.` and `..`.
//! Element names match on their local name (Windows event XML has a default namespace).
//!
//! Owns: path parsing and matching over a `roxmltree` document. Like CrowdSec, anything that
//! does not parse or match gives `""`.

use roxmltree::{Document, Node};

use super::arg_str;
use crate::value::Value;
use crate::{Arity, Compiler};

pub(super) fn register(c: &mut Compiler) {
    c.register_fn("XMLGetNodeValue", Arity::exact(2), |a| {
        let xml = arg_str("XMLGetNodeValue", a, 0)?;
        let path = arg_str("XMLGetNodeValue", a, 1)?;
        Ok(Value::string(
            find(xml, path, |n| Some(element_text(n))).unwrap_or_default(),
        ))
    });
    c.register_fn("XMLGetAttributeValue", Arity::exact(3), |a| {
        let xml = arg_str("XMLGetAttributeValue", a, 0)?;
        let path = arg_str("XMLGetAttributeValue", a, 1)?;
        let attr = arg_str("XMLGetAttributeValue", a, 2)?;
        Ok(Value::string(
            find(xml, path, |n| attribute(n, attr).map(str::to_string)).unwrap_or_default(),
        ))
    });
}

/// etree's `Element.Text()`: the character data right after the opening tag.
fn element_text(n: Node<'_, '_>) -> String {
    let mut out = String::new();
    for c in n.children() {
        if c.is_text() {
            out.push_str(c.text().unwrap_or(""));
        } else if c.is_element() {
            break;
        }
    }
    out
}

fn attribute<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    // etree's SelectAttr matches "prefix:key" or "key".
    n.attributes().find(|a| a.name() == name).map(|a| a.value())
}

/// The element wrapped around every document (a name no XML document can use: `xml`-prefixed
/// names are reserved).
const WRAP: &str = "xml-shield-root";

fn find(xml: &str, path: &str, get: impl Fn(Node<'_, '_>) -> Option<String>) -> Option<String> {
    let steps = parse_path(path)?;
    // Go's encoding/xml (under etree) reads text and several elements at the top level, as in
    // "- <Event ...>" copied from a Windows event viewer; roxmltree wants one root. Wrap the
    // document (minus its XML declaration) in a root of our own and search from there.
    let body = match xml.find("<?xml") {
        Some(i) => xml[i..].find("?>").map_or(xml, |j| &xml[i + j + 2..]),
        None => xml,
    };
    let wrapped = format!("<{WRAP}>{body}</{WRAP}>");
    let doc = Document::parse(&wrapped).ok()?;
    let mut current: Vec<Node<'_, '_>> = vec![doc.root_element()];
    for step in &steps {
        let mut next = Vec::new();
        for node in &current {
            let mut matched: Vec<Node<'_, '_>> = match step.kind {
                StepKind::SelfNode => vec![*node],
                StepKind::Parent => node.parent().into_iter().collect(),
                StepKind::Child(ref name) => node
                    .children()
                    .filter(|c| c.is_element() && name_ok(c, name))
                    .collect(),
                StepKind::Descendant(ref name) => node
                    .descendants()
                    .skip(1)
                    .filter(|c| c.is_element() && name_ok(c, name))
                    .collect(),
            };
            for pred in &step.preds {
                matched = match pred {
                    Pred::Pos(i) => matched.get(*i).copied().into_iter().collect(),
                    Pred::Attr(a) => matched
                        .into_iter()
                        .filter(|n| attribute(*n, a).is_some())
                        .collect(),
                    Pred::AttrEq(a, v) => matched
                        .into_iter()
                        .filter(|n| attribute(*n, a) == Some(v.as_str()))
                        .collect(),
                    Pred::Child(t) => matched
                        .into_iter()
                        .filter(|n| n.children().any(|c| c.is_element() && name_ok(&c, t)))
                        .collect(),
                    Pred::ChildEq(t, v) => matched
                        .into_iter()
                        .filter(|n| {
                            n.children()
                                .any(|c| c.is_element() && name_ok(&c, t) && element_text(c) == *v)
                        })
                        .collect(),
                };
            }
            for m in matched {
                if !next.contains(&m) {
                    next.push(m);
                }
            }
        }
        current = next;
        if current.is_empty() {
            return None;
        }
    }
    current.into_iter().find(|n| n.is_element()).and_then(get)
}

fn name_ok(n: &Node<'_, '_>, name: &str) -> bool {
    name == "*"
        || n.tag_name().name() == name
        || name.rsplit(':').next() == Some(n.tag_name().name())
}

enum StepKind {
    SelfNode,
    Parent,
    Child(String),
    Descendant(String),
}

enum Pred {
    Pos(usize),
    Attr(String),
    AttrEq(String, String),
    Child(String),
    ChildEq(String, String),
}

struct Step {
    kind: StepKind,
    preds: Vec<Pred>,
}

fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = path.strip_prefix('/').unwrap_or(path);
    let mut descendant = false;
    if let Some(r) = rest.strip_prefix('/') {
        rest = r;
        descendant = true;
    }
    while !rest.is_empty() {
        // A segment ends at the next '/' outside brackets and quotes.
        let mut depth = 0;
        let mut quote: Option<char> = None;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[') => depth += 1,
                (None, ']') => depth -= 1,
                (None, '/') if depth == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let seg = &rest[..end];
        rest = &rest[end..];
        let next_descendant = rest.starts_with("//");
        rest = rest
            .strip_prefix("//")
            .or_else(|| rest.strip_prefix('/'))
            .unwrap_or(rest);
        if seg.is_empty() {
            return None;
        }
        let (name, mut preds_text) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        let kind = match name {
            "." => StepKind::SelfNode,
            ".." => StepKind::Parent,
            n if descendant => StepKind::Descendant(n.to_string()),
            n => StepKind::Child(n.to_string()),
        };
        let mut preds = Vec::new();
        while let Some(p) = preds_text.strip_prefix('[') {
            let close = p.find(']')?;
            preds.push(parse_pred(&p[..close])?);
            preds_text = &p[close + 1..];
        }
        if !preds_text.is_empty() {
            return None;
        }
        steps.push(Step { kind, preds });
        descendant = next_descendant;
    }
    Some(steps)
}

fn parse_pred(p: &str) -> Option<Pred> {
    let p = p.trim();
    if let Ok(n) = p.parse::<usize>() {
        // etree positions are 1-based.
        return n.checked_sub(1).map(Pred::Pos);
    }
    let unquote = |v: &str| -> Option<String> {
        let v = v.trim();
        let q = v.chars().next()?;
        if (q == '\'' || q == '"') && v.len() >= 2 && v.ends_with(q) {
            Some(v[1..v.len() - 1].to_string())
        } else {
            None
        }
    };
    if let Some(a) = p.strip_prefix('@') {
        return Some(match a.split_once('=') {
            Some((k, v)) => Pred::AttrEq(k.trim().to_string(), unquote(v)?),
            None => Pred::Attr(a.to_string()),
        });
    }
    Some(match p.split_once('=') {
        Some((k, v)) => Pred::ChildEq(k.trim().to_string(), unquote(v)?),
        None => Pred::Child(p.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'>\
        <System><Provider Name='Microsoft-Windows-Sysmon' Guid='{5770}'/><EventID>1</EventID>\
        <Computer>host</Computer></System>\
        <EventData><Data Name='ProcessId'>4242</Data><Data Name='Image'>C:\\cmd.exe</Data>\
        <Data>third</Data></EventData></Event>";

    fn node(path: &str) -> String {
        find(EVENT, path, |n| Some(element_text(n))).unwrap_or_default()
    }

    #[test]
    fn etree_paths_the_hub_uses() {
        assert_eq!(node("/Event/EventData[1]/Data[@Name='ProcessId']"), "4242");
        assert_eq!(
            node("/Event/EventData[1]/Data[@Name='Image']"),
            "C:\\cmd.exe"
        );
        assert_eq!(node("/Event/EventData[1]/Data[3]"), "third");
        assert_eq!(node("/Event/System[1]/EventID"), "1");
        assert_eq!(node("//Computer"), "host");
        assert_eq!(node("/Event/System[EventID='1']/Computer"), "host");
        assert_eq!(node("/Event/EventData/Data[@Name='Nope']"), "");
        assert_eq!(
            find(EVENT, "/Event/System[1]/Provider", |n| attribute(n, "Name")
                .map(str::to_string))
            .as_deref(),
            Some("Microsoft-Windows-Sysmon")
        );
        assert_eq!(find("<not xml", "/a", |n| Some(element_text(n))), None);
        // Text around and between elements, as Windows' event viewer copies an event.
        let copied =
            "- <Event xmlns=\"x\">- <System>  <Channel>Security</Channel>  </System></Event>";
        assert_eq!(
            find(copied, "/Event/System[1]/Channel", |n| Some(element_text(
                n
            )))
            .as_deref(),
            Some("Security")
        );
        let declared = "<?xml version=\"1.0\"?><a><b>1</b></a>";
        assert_eq!(
            find(declared, "/a/b", |n| Some(element_text(n))).as_deref(),
            Some("1")
        );
    }
}
