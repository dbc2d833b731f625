//! Go's fmt for template values: `{{ x }}` printing (Fprint), `%v` of maps and lists
//! (`map[k:v]` sorted, `<nil>` inside), and printf's verbs with flags, width and precision
//! (docs/vault-agent-templates.md, "Printing").
//!
//! Invariants: widths and precisions stay below ~10^7 as in Go (fmt's parsenum and tooLarge),
//! so a format string cannot ask for unbounded padding; nothing here panics on any value.

use super::value::Value;

/// Go's fmt refuses widths and precisions above this (fmt's `tooLarge`).
const TOO_LARGE: usize = 1_000_000;

/// `{{ pipeline }}`: text/template's printValue. Err when Go would print an address.
pub(crate) fn print_top(v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Invalid => {
            out.extend_from_slice(b"<no value>");
            Ok(())
        }
        // printableValue takes the struct behind a pointer: no `&`.
        Value::Secret(_) => fmt_value(v, 'v', &Spec::default(), 1, out),
        v => fmt_value(v, 'v', &Spec::default(), 0, out),
    }
}

/// fmt.Sprint's spacing: a space between operands when neither is a string.
pub(crate) fn sprint(args: &[Value], limit: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        over(out, limit)?;
        let is_string = a.string_bytes().is_some();
        if i > 0 && !is_string && !prev_string {
            out.push(b' ');
        }
        fmt_value(a, 'v', &Spec::default(), 0, out)?;
        prev_string = is_string;
    }
    Ok(())
}

pub(crate) fn sprintln(args: &[Value], limit: usize, out: &mut Vec<u8>) -> Result<(), String> {
    for (i, a) in args.iter().enumerate() {
        over(out, limit)?;
        if i > 0 {
            out.push(b' ');
        }
        fmt_value(a, 'v', &Spec::default(), 0, out)?;
    }
    out.push(b'\n');
    Ok(())
}

/// The result so far past `limit`: stop (each verb adds at most Go's ~10^7 width).
fn over(out: &[u8], limit: usize) -> Result<(), String> {
    if out.len() > limit {
        return Err(format!("the result exceeds {limit} bytes"));
    }
    Ok(())
}

#[derive(Default, Clone)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// fmt.Sprintf.
pub(crate) fn sprintf(
    format: &[u8],
    args: &[Value],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut argn = 0;
    let mut i = 0;
    while i < format.len() {
        over(out, limit)?;
        let c = format[i];
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = Spec::default();
        while let Some(&f) = format.get(i) {
            match f {
                b'-' => spec.minus = true,
                b'+' => spec.plus = true,
                b'#' => spec.sharp = true,
                b' ' => spec.space = true,
                b'0' => spec.zero = true,
                _ => break,
            }
            i += 1;
        }
        // Go's parsenum: a number already above 10^6 before its next digit swallows the rest
        // of the format (so widths stay below ~10^7).
        let num = |i: &mut usize| -> Option<usize> {
            let s = *i;
            let mut n: usize = 0;
            while let Some(d) = format.get(*i).filter(|c| c.is_ascii_digit()) {
                if n > TOO_LARGE {
                    *i = format.len();
                    return None;
                }
                n = n * 10 + (d - b'0') as usize;
                *i += 1;
            }
            (*i > s).then_some(n)
        };
        let mut bad_width = false;
        if format.get(i) == Some(&b'*') {
            i += 1;
            match args.get(argn) {
                Some(Value::Int(n)) if n.unsigned_abs() <= TOO_LARGE as u64 => {
                    spec.width = Some(n.unsigned_abs() as usize);
                    spec.minus |= *n < 0;
                }
                _ => bad_width = true,
            }
            argn += 1;
        } else {
            spec.width = num(&mut i);
        }
        if bad_width {
            out.extend_from_slice(b"%!(BADWIDTH)");
        }
        if format.get(i) == Some(&b'.') {
            i += 1;
            if format.get(i) == Some(&b'*') {
                i += 1;
                match args.get(argn) {
                    Some(Value::Int(n)) if (0..=TOO_LARGE as i64).contains(n) => {
                        spec.prec = Some(*n as usize)
                    }
                    _ => out.extend_from_slice(b"%!(BADPREC)"),
                }
                argn += 1;
            } else {
                spec.prec = Some(num(&mut i).unwrap_or(0));
            }
        }
        if !spec.minus && spec.zero {
            // Go: zero padding applies unless '-' is set.
        } else {
            spec.zero = false;
        }
        let Some(verb) = next_char(format, &mut i) else {
            out.extend_from_slice(b"%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push(b'%');
            continue;
        }
        if verb == '[' {
            return Err("printf: explicit argument indexes are not supported".into());
        }
        match args.get(argn) {
            None => {
                out.extend_from_slice(format!("%!{verb}(MISSING)").as_bytes());
            }
            Some(a) => {
                argn += 1;
                fmt_value(a, verb, &spec, 0, out)?;
            }
        }
    }
    if argn < args.len() {
        out.extend_from_slice(b"%!(EXTRA ");
        for (k, a) in args[argn..].iter().enumerate() {
            if k > 0 {
                out.extend_from_slice(b", ");
            }
            if matches!(a, Value::Invalid | Value::Nil) {
                out.extend_from_slice(b"<nil>");
            } else {
                out.extend_from_slice(a.type_name().as_bytes());
                out.push(b'=');
                fmt_value(a, 'v', &Spec::default(), 0, out)?;
            }
        }
        out.push(b')');
    }
    Ok(())
}

fn next_char(b: &[u8], i: &mut usize) -> Option<char> {
    let rest = b.get(*i..)?;
    let s = match std::str::from_utf8(rest) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
    };
    match s.chars().next() {
        Some(c) => {
            *i += c.len_utf8();
            Some(c)
        }
        None if !rest.is_empty() => {
            *i += 1;
            Some(char::REPLACEMENT_CHARACTER)
        }
        None => None,
    }
}

fn pad(body: &[u8], spec: &Spec, out: &mut Vec<u8>) {
    let chars = String::from_utf8_lossy(body).chars().count();
    let width = spec.width.unwrap_or(0);
    let fill = width.saturating_sub(chars);
    if spec.minus {
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(b' ', fill));
    } else if spec.zero {
        // Zeros go after a sign.
        let (sign, digits) = match body.first() {
            Some(b'-' | b'+') => body.split_at(1),
            _ => (&body[..0], body),
        };
        out.extend_from_slice(sign);
        out.extend(std::iter::repeat_n(b'0', fill));
        out.extend_from_slice(digits);
    } else {
        out.extend(std::iter::repeat_n(b' ', fill));
        out.extend_from_slice(body);
    }
}

/// Go's badVerb: `%!VERB(TYPE=VALUE)`, the value printed with %v under the same flags,
/// width and precision (`%.1f` of json.Number "1.50" gives `%!f(json.Number=1)`).
fn bad_verb(v: &Value, verb: char, spec: &Spec, out: &mut Vec<u8>) -> Result<(), String> {
    out.extend_from_slice(format!("%!{verb}(").as_bytes());
    match v {
        Value::Invalid | Value::Nil => out.extend_from_slice(b"<nil>"),
        v => {
            out.extend_from_slice(v.type_name().as_bytes());
            out.push(b'=');
            fmt_value(v, 'v', spec, 0, out)?;
        }
    }
    out.push(b')');
    Ok(())
}

fn fmt_value(
    v: &Value,
    verb: char,
    spec: &Spec,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match v {
        // Inside a map or list a nil prints `<nil>` whatever the verb.
        Value::Invalid | Value::Nil => match verb {
            _ if depth > 0 => pad(b"<nil>", spec, out),
            'v' => pad(b"<nil>", spec, out),
            _ => bad_verb(v, verb, spec, out)?,
        },
        Value::Bool(b) => match verb {
            'v' | 't' => pad(if *b { b"true" } else { b"false" }, spec, out),
            _ => bad_verb(v, verb, spec, out)?,
        },
        Value::Int(i) => fmt_int(*i < 0, i.unsigned_abs(), v, verb, spec, out)?,
        Value::Uint(u) => fmt_int(false, *u, v, verb, spec, out)?,
        Value::Float(f) => match verb {
            'v' | 'g' | 'G' => {
                let s = match spec.prec {
                    Some(p) => format_g(*f, p.max(1)),
                    None => format_shortest_g(*f),
                };
                pad(&signed(s, spec, *f), spec, out)
            }
            'e' | 'E' => pad(
                &signed(format_e(*f, spec.prec.unwrap_or(6)), spec, *f),
                spec,
                out,
            ),
            'f' | 'F' => pad(
                &signed(
                    format!("{:.*}", spec.prec.unwrap_or(6), f).into_bytes(),
                    spec,
                    *f,
                ),
                spec,
                out,
            ),
            _ => bad_verb(v, verb, spec, out)?,
        },
        Value::Str(s) => fmt_string(s, v, verb, spec, out)?,
        // json.Number is a fmt.Stringer: v s x X q format its text; other verbs are bad.
        Value::Number(n) => fmt_string(n.as_bytes(), v, verb, spec, out)?,
        Value::List(items, _) => {
            out.push(b'[');
            for (k, it) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b' ');
                }
                fmt_value(it, verb, spec, depth + 1, out)?;
            }
            out.push(b']');
        }
        Value::Map(m, _) => {
            out.extend_from_slice(b"map[");
            for (k, (key, val)) in m.iter().enumerate() {
                if k > 0 {
                    out.push(b' ');
                }
                fmt_string(key.as_bytes(), &Value::str(key), verb, spec, out)?;
                out.push(b':');
                fmt_value(val, verb, spec, depth + 1, out)?;
            }
            out.push(b']');
        }
        Value::Secret(s) => {
            if depth > 0 {
                out.push(b'{');
            } else {
                out.extend_from_slice(b"&{");
            }
            let fields = [
                Value::str(&s.request_id),
                Value::str(&s.lease_id),
                Value::Int(s.lease_duration),
                Value::Bool(s.renewable),
                s.data.clone(),
                s.warnings.clone(),
                Value::Nil,
                Value::Nil,
            ];
            for (k, f) in fields.iter().enumerate() {
                if k > 0 {
                    out.push(b' ');
                }
                fmt_value(f, verb, spec, depth + 1, out)?;
            }
            out.push(b'}');
        }
        Value::Pem(p) => {
            out.push(b'{');
            for (k, f) in [&p.cert, &p.key, &p.ca].iter().enumerate() {
                if k > 0 {
                    out.push(b' ');
                }
                fmt_string(f.as_bytes(), &Value::str(f.as_bytes()), verb, spec, out)?;
            }
            out.push(b'}');
        }
        Value::Seq(..) => {
            return Err("cannot print the channel that loop returns; range over it".into())
        }
    }
    Ok(())
}

fn signed(mut s: Vec<u8>, spec: &Spec, f: f64) -> Vec<u8> {
    if f.is_sign_positive() && !f.is_nan() {
        if spec.plus {
            s.insert(0, b'+');
        } else if spec.space {
            s.insert(0, b' ');
        }
    }
    s
}

fn fmt_int(
    neg: bool,
    mag: u64,
    v: &Value,
    verb: char,
    spec: &Spec,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let digits = match verb {
        'v' | 'd' => mag.to_string(),
        'x' => format!("{mag:x}"),
        'X' => format!("{mag:X}"),
        'o' => format!("{mag:o}"),
        'b' => format!("{mag:b}"),
        'c' => {
            let ch = char::from_u32(mag as u32)
                .filter(|_| !neg)
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            pad(ch.to_string().as_bytes(), spec, out);
            return Ok(());
        }
        'q' => {
            let ch = char::from_u32(mag as u32)
                .filter(|_| !neg)
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut q = Vec::new();
            quote_into(ch.to_string().as_bytes(), b'\'', &mut q);
            pad(&q, spec, out);
            return Ok(());
        }
        _ => return bad_verb(v, verb, spec, out),
    };
    let mut digits = digits;
    if let Some(p) = spec.prec {
        if digits.len() < p {
            digits = format!("{}{digits}", "0".repeat(p - digits.len()));
        }
    }
    let prefix = match (spec.sharp, verb) {
        (true, 'x') => "0x",
        (true, 'X') => "0X",
        (true, 'o') => "0",
        _ => "",
    };
    let sign = if neg {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    let body = format!("{sign}{prefix}{digits}");
    let mut s = spec.clone();
    // Go: a precision turns zero padding off for integers.
    if spec.prec.is_some() {
        s.zero = false;
    }
    pad(body.as_bytes(), &s, out);
    Ok(())
}

fn fmt_string(
    s: &[u8],
    v: &Value,
    verb: char,
    spec: &Spec,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    // A precision truncates to that many runes.
    let truncated: Vec<u8>;
    let s = match spec.prec {
        Some(p) if verb != 'x' && verb != 'X' => {
            let text = String::from_utf8_lossy(s);
            if text.chars().count() > p {
                truncated = text.chars().take(p).collect::<String>().into_bytes();
                &truncated[..]
            } else {
                s
            }
        }
        _ => s,
    };
    match verb {
        'v' | 's' => pad(s, spec, out),
        'q' => {
            let mut q = Vec::new();
            if spec.sharp && !s.contains(&b'`') && std::str::from_utf8(s).is_ok() {
                q.push(b'`');
                q.extend_from_slice(s);
                q.push(b'`');
            } else {
                quote_into(s, b'"', &mut q);
            }
            pad(&q, spec, out);
        }
        'x' | 'X' => {
            let mut h = String::new();
            for (k, b) in s.iter().enumerate() {
                if spec.space && k > 0 {
                    h.push(' ');
                }
                if spec.sharp && (spec.space || k == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    h.push_str(&format!("{b:02x}"));
                } else {
                    h.push_str(&format!("{b:02X}"));
                }
            }
            pad(h.as_bytes(), spec, out);
        }
        _ => bad_verb(v, verb, spec, out)?,
    }
    Ok(())
}

/// strconv.Quote (or QuoteRune with `'`): printable runes raw, others escaped.
pub(crate) fn quote_into(s: &[u8], quote: u8, out: &mut Vec<u8>) {
    out.push(quote);
    let mut i = 0;
    while i < s.len() {
        let (ch, n) = decode_rune(&s[i..]);
        match ch {
            None => {
                out.extend_from_slice(format!("\\x{:02x}", s[i]).as_bytes());
            }
            Some(c) if c as u32 == quote as u32 || c == '\\' => {
                out.push(b'\\');
                out.push(c as u8);
            }
            Some(c) if is_print(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            Some(c) => {
                let esc = match c {
                    '\u{7}' => "\\a".to_string(),
                    '\u{8}' => "\\b".to_string(),
                    '\u{c}' => "\\f".to_string(),
                    '\n' => "\\n".to_string(),
                    '\r' => "\\r".to_string(),
                    '\t' => "\\t".to_string(),
                    '\u{b}' => "\\v".to_string(),
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("\\x{:02x}", c as u32),
                    c if (c as u32) < 0x10000 => format!("\\u{:04x}", c as u32),
                    c => format!("\\U{:08x}", c as u32),
                };
                out.extend_from_slice(esc.as_bytes());
            }
        }
        i += n;
    }
    out.push(quote);
}

fn decode_rune(s: &[u8]) -> (Option<char>, usize) {
    let n = match s.first() {
        Some(b) if *b < 0x80 => 1,
        Some(b) if b & 0xe0 == 0xc0 => 2,
        Some(b) if b & 0xf0 == 0xe0 => 3,
        Some(b) if b & 0xf8 == 0xf0 => 4,
        _ => return (None, 1),
    };
    match s.get(..n).and_then(|b| std::str::from_utf8(b).ok()) {
        Some(t) => (t.chars().next(), n),
        None => (None, 1),
    }
}

/// unicode.IsPrint, approximately: letters, marks, numbers, punctuation, symbols and the
/// ASCII space; controls, other spaces, format characters and private use are not.
pub(crate) fn is_print(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF
        | 0xFFFE | 0xFFFF | 0xD800..=0xDFFF)
}

/// Shortest decimal digits of `f` and its decimal point position: f = 0.DIGITS × 10^dp.
fn shortest(f: f64) -> (String, i32) {
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    (digits, exp + 1)
}

fn special(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".into())
    } else if f.is_infinite() {
        Some(if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        })
    } else {
        None
    }
}

/// `%v` of a float64: strconv's 'g' with the shortest precision, which switches to the
/// exponent form when the exponent is below -4 or at least 6 (`1e+06`).
pub(crate) fn format_shortest_g(f: f64) -> Vec<u8> {
    if let Some(s) = special(f) {
        return s.into_bytes();
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            b"-0".to_vec()
        } else {
            b"0".to_vec()
        };
    }
    let (digits, dp) = shortest(f);
    let exp = dp - 1;
    let s = if !(-4..6).contains(&exp) {
        e_form(&digits, exp, digits.len().saturating_sub(1))
    } else {
        f_form(&digits, dp)
    };
    let mut out = Vec::new();
    if f < 0.0 {
        out.push(b'-');
    }
    out.extend_from_slice(s.as_bytes());
    out
}

fn format_g(f: f64, prec: usize) -> Vec<u8> {
    if let Some(s) = special(f) {
        return s.into_bytes();
    }
    let e = format!("{:.*e}", prec - 1, f.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let mut digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let exp: i32 = exp.parse().unwrap_or(0);
    let s = if exp < -4 || exp >= prec as i32 {
        e_form(&digits, exp, digits.len().saturating_sub(1))
    } else {
        f_form(&digits, exp + 1)
    };
    let mut out = Vec::new();
    if f < 0.0 {
        out.push(b'-');
    }
    out.extend_from_slice(s.as_bytes());
    out
}

fn format_e(f: f64, prec: usize) -> Vec<u8> {
    if let Some(s) = special(f) {
        return s.into_bytes();
    }
    let e = format!("{:.*e}", prec, f.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    let mut s = format!("{mant}e{sign}{:02}", exp.unsigned_abs());
    if f < 0.0 {
        s.insert(0, '-');
    }
    s.into_bytes()
}

/// d.ddde±XX with `frac` digits after the point.
pub(crate) fn e_form(digits: &str, exp: i32, frac: usize) -> String {
    let mut s = String::new();
    s.push_str(&digits[..1]);
    if frac > 0 {
        s.push('.');
        s.push_str(&digits[1..]);
    }
    let sign = if exp < 0 { '-' } else { '+' };
    s.push_str(&format!("e{sign}{:02}", exp.unsigned_abs()));
    s
}

/// Plain decimal notation of 0.DIGITS × 10^dp.
pub(crate) fn f_form(digits: &str, dp: i32) -> String {
    if dp <= 0 {
        format!("0.{}{digits}", "0".repeat(dp.unsigned_abs() as usize))
    } else if dp as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(dp as usize - digits.len()))
    } else {
        format!("{}.{}", &digits[..dp as usize], &digits[dp as usize..])
    }
}

/// Shortest digits and exponent, for JSON's float encoding.
pub(crate) fn shortest_parts(f: f64) -> (String, i32) {
    shortest(f)
}
