//! `$(VAR)` references in command, args and env values, expanded as kubelet's
//! third_party/forked/golang/expansion does: `$$` is a literal `$`, an unknown reference stays as
//! written.

/// Expands `$(NAME)` references in `input` with `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let _ = (input, lookup);
    todo!()
}
