//! Writing HL7v2: segments built field by field, then written with the target's delimiters,
//! every value escaped (`Delimiters::escape_text`), trailing empty fields, repetitions and
//! components left off, segments ended by a carriage return.

use super::super::message::Delimiters;

/// A component: its subcomponents (one for most).
pub type Component = Vec<String>;
/// A repetition: its components.
pub type Rep = Vec<Component>;

/// One segment being written. Fields are 1-based as the standard counts them; for MSH, field
/// 1 (the field separator) and 2 (the encoding characters) are written from the delimiters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seg {
    pub id: &'static str,
    fields: Vec<Vec<Rep>>,
}

impl Seg {
    pub fn new(id: &'static str) -> Seg {
        Seg {
            id,
            fields: Vec::new(),
        }
    }

    fn slot(&mut self, n: usize) -> &mut Vec<Rep> {
        assert!(n >= 1, "fields count from 1");
        if self.fields.len() < n {
            self.fields.resize(n, Vec::new());
        }
        &mut self.fields[n - 1]
    }

    /// Field `n` as one simple value (nothing when empty).
    pub fn text(mut self, n: usize, value: &str) -> Seg {
        if !value.is_empty() {
            *self.slot(n) = vec![vec![vec![value.to_string()]]];
        }
        self
    }

    /// Field `n` as one repetition of these components (each a simple value).
    pub fn comps(mut self, n: usize, components: &[&str]) -> Seg {
        let rep: Rep = components.iter().map(|c| vec![c.to_string()]).collect();
        if !is_empty(&rep) {
            *self.slot(n) = vec![rep];
        }
        self
    }

    /// Field `n` as these repetitions (empty ones left out).
    pub fn reps(mut self, n: usize, reps: Vec<Rep>) -> Seg {
        let reps: Vec<Rep> = reps.into_iter().filter(|r| !is_empty(r)).collect();
        if !reps.is_empty() {
            *self.slot(n) = reps;
        }
        self
    }
}

fn is_empty(rep: &Rep) -> bool {
    rep.iter().all(|c| c.iter().all(String::is_empty))
}

/// Components from simple values: `comp(&["a", "", "c"])`.
pub fn rep(components: &[&str]) -> Rep {
    components.iter().map(|c| vec![c.to_string()]).collect()
}

/// The segments as a message, with `d`'s delimiters.
pub fn message(segments: &[Seg], d: &Delimiters) -> String {
    let mut out = String::new();
    for seg in segments {
        out.push_str(seg.id);
        let skip = match seg.id {
            "MSH" => {
                out.push(d.field);
                out.push_str(&d.encoding_characters());
                2
            }
            _ => 0,
        };
        let last = seg
            .fields
            .iter()
            .rposition(|f| !f.is_empty())
            .map_or(0, |i| i + 1);
        for field in seg.fields.iter().take(last).skip(skip) {
            out.push(d.field);
            for (i, rep) in field.iter().enumerate() {
                if i > 0 {
                    out.push(d.repetition);
                }
                write_rep(&mut out, rep, d);
            }
        }
        out.push('\r');
    }
    out
}

fn write_rep(out: &mut String, rep: &Rep, d: &Delimiters) {
    let last = rep
        .iter()
        .rposition(|c| c.iter().any(|s| !s.is_empty()))
        .map_or(0, |i| i + 1);
    for (i, component) in rep.iter().take(last).enumerate() {
        if i > 0 {
            out.push(d.component);
        }
        let last = component
            .iter()
            .rposition(|s| !s.is_empty())
            .map_or(0, |i| i + 1);
        for (j, sub) in component.iter().take(last).enumerate() {
            if j > 0 {
                out.push(d.subcomponent);
            }
            out.push_str(&d.escape_text(sub));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::message::parse;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_segment_is_written_with_the_target_s_delimiters() {
        let msh = Seg::new("MSH")
            .text(3, "EMRSYNC")
            .text(9, "ADT^A01")
            .text(12, "2.5.1");
        let pid = Seg::new("PID")
            .reps(
                3,
                vec![rep(&["123", "", "", "GH"]), rep(&["", ""]), rep(&["9"])],
            )
            .comps(5, &["O'Brien|Smith", "Ann^Marie"]);
        let text = message(&[msh.clone(), pid.clone()], &Delimiters::default());
        assert_eq!(
            text,
            "MSH|^~\\&|EMRSYNC||||||ADT\\S\\A01|||2.5.1\rPID|||123^^^GH~9||O'Brien\\F\\Smith^Ann\\S\\Marie\r"
        );
        let other = Delimiters {
            field: '#',
            component: '!',
            repetition: '*',
            escape: Some('$'),
            subcomponent: '@',
        };
        let text = message(&[msh, pid], &other);
        assert!(text.starts_with("MSH#!*$@#EMRSYNC"), "{text}");
        assert!(
            text.contains("123!!!GH*9##O'Brien|Smith!Ann^Marie"),
            "{text}"
        );
    }

    proptest! {
        /// Whatever text a resource holds, the message written parses back to it: no value can
        /// end a field, a component, a segment or the MLLP frame.
        #[test]
        fn any_text_survives_the_round_trip(family in "\\PC{0,40}", given in ".{0,20}", crs in "[\r\n\u{0b}\u{1c}|^~&\\\\ a]{0,10}") {
            let family = format!("{family}{crs}");
            let msh = Seg::new("MSH").text(3, "EMRSYNC").comps(9, &["ADT", "A01"]).text(10, "1").text(11, "P").text(12, "2.5.1");
            let pid = Seg::new("PID").comps(5, &[&family, &given]);
            let text = message(&[msh, pid], &Delimiters::default());
            let framing = text.contains(['\u{0b}', '\u{1c}']);
            prop_assert!(!framing, "a frame byte in {:?}", text);
            prop_assert_eq!(text.matches('\r').count(), 2);
            let parsed = parse(&text).unwrap();
            let pid = parsed.first("PID").unwrap();
            // line breaks come back as a line break (\.br\), the rest as written (the parser
            // reads values without their surrounding spaces)
            let expected = |s: &str| s.replace('\r', "\n").trim().to_string();
            prop_assert_eq!(expected(pid.get(5, 1)), expected(&family));
            prop_assert_eq!(expected(pid.get(5, 2)), expected(&given));
        }
    }
}
