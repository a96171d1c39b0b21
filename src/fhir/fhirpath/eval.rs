//! Evaluating an expression over a resource's JSON. Every item carries its FHIR type, taken
//! from the spec's structure definitions as the walk goes down, so that choice elements
//! (`Observation.value` finds `valueQuantity`), `is`, `as` and `ofType` work as in FHIRPath.

use super::parse::Expr;
use crate::fhir::definitions::Definitions;
use serde_json::Value;

/// One item of a collection: a JSON value (absent for what `resolve()` returns, which only
/// knows its type) and its FHIR type name.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub value: Option<&'a Value>,
    pub ty: &'static str,
    /// The required value set the element is bound to, if any (a `code`'s implied system).
    pub binding: Option<&'static str>,
}

/// What an expression yields: items of the resource, or values it made itself (literals and
/// the booleans of `exists()`, `=`, `and`, ...: the `deceased` parameter is such a boolean).
#[derive(Debug, Clone)]
pub enum Out<'a> {
    Item(Item<'a>),
    Literal(Value),
}

/// Evaluate `expr` on `resource` (whose type is its `resourceType`).
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Vec<Out<'a>> {
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(|t| Definitions::get().type_name(t))
        .unwrap_or("Resource");
    let root = Item {
        value: Some(resource),
        ty,
        binding: None,
    };
    eval(expr, &[Out::Item(root)])
}

/// Evaluate `expr` relative to `item` (a composite parameter's components).
pub fn evaluate_on<'a>(expr: &Expr, item: Item<'a>) -> Vec<Out<'a>> {
    eval(expr, &[Out::Item(item)])
}

fn eval<'a>(expr: &Expr, input: &[Out<'a>]) -> Vec<Out<'a>> {
    match expr {
        Expr::This => input.to_vec(),
        Expr::Root(name) => {
            let is_self = |o: &Out| match o {
                Out::Item(i) => {
                    i.ty == name || matches!(name.as_str(), "Resource" | "DomainResource")
                }
                Out::Literal(_) => false,
            };
            if !input.is_empty() && input.iter().all(is_self) {
                input.to_vec()
            } else {
                members(input, name)
            }
        }
        Expr::Member(target, name) => members(&eval(target, input), name),
        Expr::Index(target, n) => eval(target, input)
            .into_iter()
            .nth(*n)
            .into_iter()
            .collect(),
        Expr::Call(target, name, args) => call(&eval(target, input), name, args),
        Expr::Is(target, ty) => {
            let items = eval(target, input);
            match items.as_slice() {
                [one] => vec![Out::Literal(Value::Bool(is_type(one, ty)))],
                _ => vec![],
            }
        }
        Expr::As(target, ty) => eval(target, input)
            .into_iter()
            .filter(|o| is_type(o, ty))
            .collect(),
        Expr::Union(a, b) => {
            let mut out = eval(a, input);
            out.extend(eval(b, input));
            out
        }
        Expr::Equals(a, b) => compare(&eval(a, input), &eval(b, input), false),
        Expr::NotEquals(a, b) => compare(&eval(a, input), &eval(b, input), true),
        Expr::And(a, b) => {
            let (x, y) = (truth(&eval(a, input)), truth(&eval(b, input)));
            match (x, y) {
                (Some(false), _) | (_, Some(false)) => vec![Out::Literal(Value::Bool(false))],
                (Some(true), Some(true)) => vec![Out::Literal(Value::Bool(true))],
                _ => vec![],
            }
        }
        Expr::Or(a, b) => {
            let (x, y) = (truth(&eval(a, input)), truth(&eval(b, input)));
            match (x, y) {
                (Some(true), _) | (_, Some(true)) => vec![Out::Literal(Value::Bool(true))],
                (Some(false), Some(false)) => vec![Out::Literal(Value::Bool(false))],
                _ => vec![],
            }
        }
        Expr::Str(s) => vec![Out::Literal(Value::String(s.clone()))],
        Expr::Bool(b) => vec![Out::Literal(Value::Bool(*b))],
        Expr::Number(n) => vec![Out::Literal(serde_json::from_str(n).unwrap_or(Value::Null))],
    }
}

/// The `name` members of each item, arrays flattened, with their FHIR types.
fn members<'a>(input: &[Out<'a>], name: &str) -> Vec<Out<'a>> {
    let defs = Definitions::get();
    let mut out = Vec::new();
    for o in input {
        let Out::Item(Item {
            value: Some(Value::Object(obj)),
            ty,
            ..
        }) = o
        else {
            continue;
        };
        let member = defs.member(ty, name);
        let binding = member.and_then(|m| m.binding());
        let mut push = |v: &'a Value, ty: &'static str| match v {
            Value::Array(items) => out.extend(
                items
                    .iter()
                    .filter(|i| !i.is_null())
                    .map(|i| Out::Item(item_of(i, ty, binding))),
            ),
            Value::Null => {}
            single => out.push(Out::Item(item_of(single, ty, binding))),
        };
        match member {
            Some(member) if member.is_choice() => {
                for (key, value) in obj.iter() {
                    if let Some(t) = key
                        .strip_prefix(name)
                        .and_then(|suffix| member.choice_type(suffix))
                    {
                        push(value, t);
                    }
                }
            }
            Some(member) => {
                if let Some(v) = obj.get(name) {
                    push(v, member.type_name());
                }
            }
            // a type the definitions do not describe: follow the JSON, type unknown
            None => {
                if let Some(v) = obj.get(name) {
                    push(v, "");
                }
            }
        }
    }
    out
}

/// A contained or Bundle-held resource takes its type from its `resourceType`.
fn item_of<'a>(
    value: &'a Value,
    declared: &'static str,
    binding: Option<&'static str>,
) -> Item<'a> {
    let ty = if declared == "Resource" {
        value
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(|t| Definitions::get().type_name(t))
            .unwrap_or(declared)
    } else {
        declared
    };
    Item {
        value: Some(value),
        ty,
        binding,
    }
}

fn is_type(o: &Out, ty: &str) -> bool {
    match o {
        Out::Item(i) => {
            i.ty == ty
                || (ty == "Resource" || ty == "DomainResource")
                    && Definitions::get().is_resource_type(i.ty)
        }
        Out::Literal(Value::String(_)) => ty == "string",
        Out::Literal(Value::Bool(_)) => ty == "boolean",
        Out::Literal(Value::Number(_)) => ty == "decimal" || ty == "integer",
        Out::Literal(_) => false,
    }
}

fn call<'a>(input: &[Out<'a>], name: &str, args: &[Expr]) -> Vec<Out<'a>> {
    let bool_out = |b: bool| vec![Out::Literal(Value::Bool(b))];
    let type_arg = || match args.first() {
        Some(Expr::Root(t)) => t.as_str(),
        Some(Expr::Member(_, t)) => t.as_str(), // FHIR.Quantity
        _ => "",
    };
    match name {
        "where" => input
            .iter()
            .filter(|o| {
                let one = [(*o).clone()];
                args.first()
                    .is_some_and(|c| truth(&eval(c, &one)) == Some(true))
            })
            .cloned()
            .collect(),
        "exists" => match args.first() {
            None => bool_out(!input.is_empty()),
            Some(c) => bool_out(input.iter().any(|o| {
                let one = [o.clone()];
                truth(&eval(c, &one)) == Some(true)
            })),
        },
        "empty" => bool_out(input.is_empty()),
        "not" => match truth(input) {
            Some(b) => bool_out(!b),
            None => vec![],
        },
        "first" => input.first().cloned().into_iter().collect(),
        "as" | "ofType" => input
            .iter()
            .filter(|o| is_type(o, type_arg()))
            .cloned()
            .collect(),
        "is" => match input {
            [one] => bool_out(is_type(one, type_arg())),
            _ => vec![],
        },
        "resolve" => input.iter().filter_map(resolve).collect(),
        "extension" => {
            let url = match args.first() {
                Some(Expr::Str(u)) => u.as_str(),
                _ => return vec![],
            };
            members(input, "extension")
                .into_iter()
                .filter(|o| {
                    matches!(o, Out::Item(Item { value: Some(v), .. })
                        if v.get("url").and_then(Value::as_str) == Some(url))
                })
                .collect()
        }
        _ => vec![],
    }
}

/// `resolve()` without a database: a reference tells the type of what it points at, which is
/// all that the search parameters ask of it (`where(resolve() is Patient)`).
fn resolve<'a>(o: &Out<'a>) -> Option<Out<'a>> {
    let Out::Item(Item { value: Some(v), .. }) = o else {
        return None;
    };
    let defs = Definitions::get();
    let from_type = v
        .get("type")
        .and_then(Value::as_str)
        .and_then(|t| defs.type_name(t));
    let from_reference = v.get("reference").and_then(Value::as_str).and_then(|r| {
        let path = r.split(['?', '#']).next().unwrap_or("");
        let mut parts = path.rsplit('/');
        let (last, prev) = (parts.next()?, parts.next()?);
        // [base/]Type/id or [base/]Type/id/_history/vid
        defs.type_name(prev)
            .or_else(|| {
                (prev == "_history")
                    .then(|| parts.nth(1))
                    .flatten()
                    .and_then(|t| defs.type_name(t))
            })
            .filter(|_| !last.is_empty())
    });
    let ty = from_type.or(from_reference)?;
    Some(Out::Item(Item {
        value: None,
        ty,
        binding: None,
    }))
}

/// A collection as a boolean: empty is unknown, a single boolean is itself, anything else true.
fn truth(c: &[Out]) -> Option<bool> {
    match c {
        [] => None,
        [Out::Literal(Value::Bool(b))] => Some(*b),
        [
            Out::Item(Item {
                value: Some(Value::Bool(b)),
                ..
            }),
        ] => Some(*b),
        _ => Some(true),
    }
}

/// `=` and `!=` on single primitive values (strings, booleans, numbers); empty if either side
/// is empty, false when the kinds differ.
fn compare<'a>(a: &[Out<'a>], b: &[Out<'a>], negate: bool) -> Vec<Out<'a>> {
    let (Some(x), Some(y)) = (primitive(a), primitive(b)) else {
        return vec![];
    };
    vec![Out::Literal(Value::Bool((x == y) != negate))]
}

fn primitive<'v>(c: &'v [Out]) -> Option<&'v Value> {
    let v = match c {
        [Out::Literal(l)] => l,
        [Out::Item(Item { value: Some(v), .. })] => *v,
        _ => return None,
    };
    (!v.is_object() && !v.is_array()).then_some(v)
}
