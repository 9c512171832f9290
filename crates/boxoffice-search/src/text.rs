//! Text rules both engines share: how many typos a word may have, how a
//! highlight is marked, and the edit distance the embedded engine uses to
//! decide which words of a title matched.

/// Marks the start of a matched word inside a highlight (a private-use
/// character: it cannot clash with HTML or with any title, see
/// [`strip_markers`]).
pub const HIGHLIGHT_START: char = '\u{E000}';
pub const HIGHLIGHT_END: char = '\u{E001}';

/// Typos a query word of this many characters may have: none below five, one
/// from five, two from nine (Meilisearch's defaults, so both engines agree).
pub fn typo_budget(chars: usize) -> u8 {
    match chars {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Removes highlight markers from text that is about to be indexed.
pub fn strip_markers(text: &str) -> String {
    text.chars()
        .filter(|c| *c != HIGHLIGHT_START && *c != HIGHLIGHT_END)
        .collect()
}

/// Edit distance counting an insertion, deletion, substitution or swap of
/// two neighbours as one edit (optimal string alignment).
pub fn edit_distance(a: &[char], b: &[char]) -> usize {
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
pub fn word_matches(word: &str, query: &str, is_last: bool) -> bool {
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
