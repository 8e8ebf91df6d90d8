//! `PageTemplate`: the part of Go's `html/template` that error pages use.
//!
//! Kamal users write `503.html` with `{{ .Message }}` and
//! `{{ if .Message }}...{{ else }}...{{ end }}`; those, comments and `{{- -}}` whitespace
//! trimming are supported, and values are HTML-escaped as `html/template` does. Anything
//! else is refused when the page is loaded, so a deploy fails early instead of a visitor
//! getting a broken page.

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Message,
    IfMessage {
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PageTemplate {
    nodes: Vec<Node>,
}

/// One `{{ ... }}` action, with its trim markers.
struct Action<'a> {
    body: &'a str,
    trim_before: bool,
    trim_after: bool,
}

enum Token<'a> {
    Text(&'a str),
    Action(Action<'a>),
}

fn tokenize(source: &str) -> Result<Vec<Token<'_>>, String> {
    let mut tokens = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        tokens.push(Token::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or("unclosed action: missing \"}}\"")?;
        let raw = &after[..close];
        let trim_before = raw.starts_with("- ") || raw == "-";
        let trim_after = raw.ends_with(" -");
        let body = raw.strip_prefix('-').filter(|_| trim_before).unwrap_or(raw);
        let body = body
            .strip_suffix('-')
            .filter(|_| trim_after)
            .unwrap_or(body);
        tokens.push(Token::Action(Action {
            body: body.trim(),
            trim_before,
            trim_after,
        }));
        rest = &after[close + 2..];
    }
    tokens.push(Token::Text(rest));
    Ok(tokens)
}

/// Applies `{{-` / `-}}` to the neighbouring text tokens.
fn trimmed_texts<'a>(tokens: &[Token<'a>]) -> Vec<Option<&'a str>> {
    let mut texts: Vec<Option<&'a str>> = tokens
        .iter()
        .map(|t| {
            if let Token::Text(text) = t {
                Some(*text)
            } else {
                None
            }
        })
        .collect();
    for (index, token) in tokens.iter().enumerate() {
        if let Token::Action(action) = token {
            if action.trim_before && index > 0 {
                texts[index - 1] = texts[index - 1].map(str::trim_end);
            }
            if action.trim_after && index + 1 < texts.len() {
                texts[index + 1] = texts[index + 1].map(str::trim_start);
            }
        }
    }
    texts
}

/// Where parsing stopped inside a block.
enum Stop {
    Else,
    End,
    Eof,
}

fn parse_block(
    tokens: &[Token<'_>],
    texts: &[Option<&str>],
    position: &mut usize,
) -> Result<(Vec<Node>, Stop), String> {
    let mut nodes = Vec::new();
    while *position < tokens.len() {
        let index = *position;
        *position += 1;
        let action = match &tokens[index] {
            Token::Text(_) => {
                if let Some(text) = texts[index].filter(|t| !t.is_empty()) {
                    nodes.push(Node::Text(text.to_string()));
                }
                continue;
            }
            Token::Action(action) => action.body,
        };
        let words: Vec<&str> = action.split_whitespace().collect();
        match words.as_slice() {
            [] => return Err("empty action {{}}".into()),
            [comment, ..] if comment.starts_with("/*") => {
                if !action.ends_with("*/") {
                    return Err("unclosed comment".into());
                }
            }
            [".Message"] => nodes.push(Node::Message),
            ["if", ".Message"] => {
                let (then, stop) = parse_block(tokens, texts, position)?;
                let otherwise = match stop {
                    Stop::End => Vec::new(),
                    Stop::Else => match parse_block(tokens, texts, position)? {
                        (otherwise, Stop::End) => otherwise,
                        _ => return Err("{{ if }} without {{ end }}".into()),
                    },
                    Stop::Eof => return Err("{{ if }} without {{ end }}".into()),
                };
                nodes.push(Node::IfMessage { then, otherwise });
            }
            ["else"] => return Ok((nodes, Stop::Else)),
            ["end"] => return Ok((nodes, Stop::End)),
            _ => return Err(format!("unsupported action {{{{ {action} }}}}: only .Message, if/else/end and comments are available")),
        }
    }
    Ok((nodes, Stop::Eof))
}

/// HTML-escapes `text` as Go's `html/template` does for text, appending to `out`; the
/// built-in error pages use it too.
pub fn escape_html(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

fn render_nodes(nodes: &[Node], message: &str, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Message => escape_html(message, out),
            Node::IfMessage { then, otherwise } => render_nodes(
                if message.is_empty() { otherwise } else { then },
                message,
                out,
            ),
        }
    }
}

impl PageTemplate {
    pub fn parse(source: &str) -> Result<Self, String> {
        let tokens = tokenize(source)?;
        let texts = trimmed_texts(&tokens);
        let mut position = 0;
        match parse_block(&tokens, &texts, &mut position)? {
            (nodes, Stop::Eof) => Ok(PageTemplate { nodes }),
            (_, Stop::Else) => Err("{{ else }} outside {{ if }}".into()),
            (_, Stop::End) => Err("{{ end }} outside {{ if }}".into()),
        }
    }

    pub fn render(&self, message: &str) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, message, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_message_escaped() {
        let page = PageTemplate::parse("Custom Maintenance Page: {{ .Message }}").unwrap();
        assert_eq!(
            page.render("Back at <5>"),
            "Custom Maintenance Page: Back at &lt;5&gt;"
        );
    }

    #[test]
    fn chooses_a_branch_on_whether_there_is_a_message() {
        let page = PageTemplate::parse(
            "{{ if .Message }}<p>{{ .Message }}</p>{{ else }}<p>Down.</p>{{ end }}",
        )
        .unwrap();
        assert_eq!(page.render("Soon"), "<p>Soon</p>");
        assert_eq!(page.render(""), "<p>Down.</p>");
        let no_else = PageTemplate::parse("a{{if .Message}}b{{end}}c").unwrap();
        assert_eq!(no_else.render(""), "ac");
    }

    #[test]
    fn trims_whitespace_and_skips_comments() {
        let page = PageTemplate::parse("a  {{- /* note */ -}}  b {{- .Message }}").unwrap();
        assert_eq!(page.render("!"), "ab!");
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        assert!(PageTemplate::parse("{{ .Status }}")
            .unwrap_err()
            .contains(".Status"));
        assert!(PageTemplate::parse("{{ if .Message }}x").is_err());
        assert!(PageTemplate::parse("{{ end }}").is_err());
        assert!(PageTemplate::parse("{{ .Message ").is_err());
    }
}
