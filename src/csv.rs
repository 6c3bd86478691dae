//! CSV output (RFC 4180) for the exports a spreadsheet may open: the audit log and open data.

/// One field: quoted when needed; a leading `=`, `+`, `-` or `@` is prefixed with `'` so that
/// a spreadsheet does not run it as a formula.
pub fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// One record: the fields, each through [`field`], joined by commas and ended by CRLF.
pub fn record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut out = fields.iter().map(|f| field(f.as_ref())).collect::<Vec<_>>().join(",");
    out += "\r\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_defuses_formulas() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(field("-1,2"), "\"'-1,2\"");
        assert_eq!(record(&["a", "b,c"]), "a,\"b,c\"\r\n");
    }
}
