//! Text rules both engines share: which words a query asks for, how many
//! typos a word may have, how a highlight is marked (whole words), and the
//! edit distance the embedded engine uses to decide which words of a title
//! matched.

/// Marks the start of a matched word inside a highlight (a private-use
/// character: it cannot clash with HTML or with any title, see
/// [`strip_markers`]).
pub(crate) const HIGHLIGHT_START: char = '\u{E000}';
pub(crate) const HIGHLIGHT_END: char = '\u{E001}';

/// Most words of a query that are searched; later ones are ignored
/// (Meilisearch's own limit is ten).
pub const MAX_QUERY_WORDS: usize = 10;

/// Words this long (in UTF-8 bytes) or longer are noise: the embedded engine
/// indexes none, so no query looks for one.
pub(crate) const MAX_WORD_BYTES: usize = 40;

/// Whether `c` belongs to a word. Everything else (spaces, punctuation,
/// quotes, `-`, symbols) only separates words.
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// The words a query asks for, as typed (case and accents kept: each engine
/// folds them the way it folds documents).
///
/// This is the one reading of query text both engines apply before
/// searching. A word is a run of letters and digits; everything else only
/// separates words, so engine syntax never leaks through: `"tanabe yuki"`
/// is not a phrase and `tour -live` does not exclude `live` — every word
/// must still match, in any order. At most [`MAX_QUERY_WORDS`] words count,
/// and words of [`MAX_WORD_BYTES`] or more are skipped.
pub(crate) fn query_words(text: &str) -> Vec<&str> {
    text.split(|c: char| !is_word_char(c))
        .filter(|word| !word.is_empty() && word.len() < MAX_WORD_BYTES)
        .take(MAX_QUERY_WORDS)
        .collect()
}

/// Widens every highlight to the whole words it touches and marks each word
/// on its own: `<Tanab>e` becomes `<Tanabe>`, and a span over `New York`
/// becomes `<New> <York>`. Separators are never marked. Both engines
/// answer highlights in this shape.
pub(crate) fn whole_word_highlights(marked: &str) -> String {
    // The text without markers, and for each of its chars whether a
    // highlight covered it.
    let mut text: Vec<char> = Vec::with_capacity(marked.len());
    let mut covered: Vec<bool> = Vec::with_capacity(marked.len());
    let mut inside = false;
    for c in marked.chars() {
        match c {
            HIGHLIGHT_START => inside = true,
            HIGHLIGHT_END => inside = false,
            c => {
                text.push(c);
                covered.push(inside);
            }
        }
    }
    let mut out = String::with_capacity(marked.len());
    let mut at = 0;
    while at < text.len() {
        if !is_word_char(text[at]) {
            out.push(text[at]);
            at += 1;
            continue;
        }
        let end = text[at..]
            .iter()
            .position(|c| !is_word_char(*c))
            .map_or(text.len(), |len| at + len);
        let highlighted = covered[at..end].iter().any(|covered| *covered);
        if highlighted {
            out.push(HIGHLIGHT_START);
        }
        out.extend(&text[at..end]);
        if highlighted {
            out.push(HIGHLIGHT_END);
        }
        at = end;
    }
    out
}

/// Typos a query word of this many characters may have: none below five, one
/// from five, two from nine (Meilisearch's defaults, so both engines agree).
pub(crate) fn typo_budget(chars: usize) -> u8 {
    match chars {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Removes highlight markers from text that is about to be indexed.
pub(crate) fn strip_markers(text: &str) -> String {
    text.chars()
        .filter(|c| *c != HIGHLIGHT_START && *c != HIGHLIGHT_END)
        .collect()
}

/// Edit distance counting an insertion, deletion, substitution or swap of
/// two neighbours as one edit (optimal string alignment).
pub(crate) fn edit_distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    let mut rows = vec![0usize; (a.len() + 1) * width];
    for (j, cell) in rows.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        rows[i * width] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[(i - 1) * width + j] + 1)
                .min(rows[i * width + j - 1] + 1)
                .min(rows[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[(i - 2) * width + j - 2] + 1);
            }
            rows[i * width + j] = best;
        }
    }
    rows[a.len() * width + b.len()]
}

/// Whether `word` (folded) matches the folded query word `query` within its
/// typo budget; the last query word also matches as a prefix.
pub(crate) fn word_matches(word: &str, query: &str, is_last: bool) -> bool {
    if word == query || (is_last && word.starts_with(query)) {
        return true;
    }
    let query: Vec<char> = query.chars().collect();
    let budget = usize::from(typo_budget(query.len()));
    if budget == 0 {
        return false;
    }
    let word: Vec<char> = word.chars().collect();
    if edit_distance(&word, &query) <= budget {
        return true;
    }
    if is_last {
        // A prefix of the word, of about the query's length, within the budget.
        let shortest = query.len().saturating_sub(budget).max(1);
        let longest = (query.len() + budget).min(word.len());
        return (shortest..=longest).any(|len| edit_distance(&word[..len], &query) <= budget);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(text: &str) -> Vec<char> {
        text.chars().collect()
    }

    fn marked(text: &str) -> String {
        text.replace('<', &HIGHLIGHT_START.to_string())
            .replace('>', &HIGHLIGHT_END.to_string())
    }

    #[test]
    fn query_words_ignore_engine_syntax() {
        assert_eq!(query_words("\"tanabe yuki\""), vec!["tanabe", "yuki"]);
        assert_eq!(query_words("tour -live"), vec!["tour", "live"]);
        assert_eq!(
            query_words("  Jay-Z, Beyoncé! "),
            vec!["Jay", "Z", "Beyoncé"]
        );
        assert_eq!(query_words("\" - \""), Vec::<&str>::new());
        let long = "x".repeat(MAX_WORD_BYTES);
        assert_eq!(query_words(&format!("a {long} b")), vec!["a", "b"]);
        let many = "w ".repeat(MAX_QUERY_WORDS + 3);
        assert_eq!(query_words(&many).len(), MAX_QUERY_WORDS);
    }

    #[test]
    fn highlights_cover_whole_words_one_by_one() {
        assert_eq!(
            whole_word_highlights(&marked("Yuki <Tanab>e")),
            marked("Yuki <Tanabe>")
        );
        assert_eq!(
            whole_word_highlights(&marked("<New York> Nights")),
            marked("<New> <York> Nights")
        );
        assert_eq!(
            whole_word_highlights(&marked("<M>7<2> & Beyonc<é>!")),
            marked("<M72> & <Beyoncé>!")
        );
        assert_eq!(
            whole_word_highlights(&marked("nothing, here")),
            "nothing, here"
        );
        assert_eq!(whole_word_highlights(&marked("<,> x")), ", x");
    }

    #[test]
    fn swaps_count_as_one_edit() {
        assert_eq!(edit_distance(&chars("swfit"), &chars("swift")), 1);
        assert_eq!(edit_distance(&chars("tayler"), &chars("taylor")), 1);
        assert_eq!(edit_distance(&chars(""), &chars("abc")), 3);
    }

    #[test]
    fn words_match_by_typo_budget_and_prefix() {
        assert!(word_matches("swift", "swfit", false));
        assert!(word_matches("metallica", "metal", true));
        assert!(!word_matches("metallica", "metal", false));
        assert!(
            !word_matches("rock", "rick", false),
            "four letters allow no typo"
        );
        assert!(
            word_matches("metallica", "metak", true),
            "a typo in a prefix"
        );
    }
}
