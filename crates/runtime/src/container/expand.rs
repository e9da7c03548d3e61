//! `$(VAR)` references in command, args and env values, expanded as kubelet's
//! third_party/forked/golang/expansion does: `$$` is a literal `$`, an unknown or unterminated
//! reference stays as written.

/// Expands `$(NAME)` references in `input` with `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.as_bytes().first() {
            // A `$` at the very end is kept.
            None => {
                out.push('$');
                rest = after;
            }
            Some(b'$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some(b'(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                // Unterminated: `$(` is kept and the rest read on.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(_) => {
                // `$x`: both kept; x may start a reference only if it is `$`, handled above.
                let c = after.chars().next().unwrap_or_default();
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(name: &str) -> Option<String> {
        match name {
            "VAR_A" => Some("A".into()),
            "VAR_B" => Some("B".into()),
            "VAR_C" => Some("C".into()),
            "VAR_REF" => Some("$(VAR_A)".into()),
            "VAR_EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    /// Cases from kubelet's expansion tests (third_party/forked/golang/expansion/expand_test.go).
    #[test]
    fn kubelet_cases() {
        for (input, want) in [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A)", "$VAR_A)"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$(UNKNOWN)$(VAR_A)", "$(UNKNOWN)A"),
            ("$()", "$()"),
            ("$", "$"),
            ("foo$", "foo$"),
            ("$(VAR_A)$", "A$"),
            ("$$", "$"),
            ("$é", "$é"),
            ("", ""),
            ("no refs", "no refs"),
            ("$(VAR_A)$(", "A$("),
        ] {
            assert_eq!(expand(input, env), want, "input {input:?}");
        }
    }
}
