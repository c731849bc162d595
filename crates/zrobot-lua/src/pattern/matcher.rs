//! The Lua 5.4 pattern matcher (manual §6.4.1), step for step the algorithm of
//! `lstrlib.c`, but metered: every step is counted and handed to a meter every
//! few thousand steps, which can stop the match. C Lua's matcher cannot be
//! stopped (it runs inside one C call, out of reach of the instruction hook),
//! and its backtracking is exponential in the number of quantifiers.
//!
//! It works on bytes, like Lua: a pattern or subject read past its end reads
//! a 0, as C reads the terminating NUL of a Lua string.

use thiserror::Error;

/// Nested `match` calls allowed (C Lua's `MAXCCALLS`). It also bounds the
/// Rust stack a match uses: each level is a frame or two of a few words.
const MAX_DEPTH: u32 = 200;

/// Captures a pattern may hold (C Lua's `LUA_MAXCAPTURES`).
pub(crate) const MAX_CAPTURES: usize = 32;

/// Steps between two calls of the meter: cheap enough to be rare, close enough
/// (a few microseconds of matching) that a deadline is kept to the millisecond.
pub(crate) const CHECK_EVERY: u64 = 4096;

/// A capture still open (`(` seen, `)` not yet).
const CAP_UNFINISHED: isize = -1;
/// A position capture `()`.
const CAP_POSITION: isize = -2;

/// Why a match could not be run; the messages are C Lua's, word for word,
/// since templates may test them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum PatternError {
    #[error("malformed pattern (ends with '%')")]
    EndsWithEscape,
    #[error("malformed pattern (missing ']')")]
    MissingBracket,
    #[error("malformed pattern (missing arguments to '%b')")]
    MissingBalanceArguments,
    #[error("missing '[' after '%f' in pattern")]
    MissingFrontierSet,
    #[error("invalid capture index %{0}")]
    InvalidCaptureIndex(i32),
    #[error("invalid pattern capture")]
    InvalidPatternCapture,
    #[error("unfinished capture")]
    UnfinishedCapture,
    #[error("too many captures")]
    TooManyCaptures,
    #[error("pattern too complex")]
    TooComplex,
    /// The meter refused more steps: the action's budget is spent.
    #[error("the action was stopped by the robot")]
    Stopped,
}

/// One capture as the functions hand it back to Lua.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture {
    /// Bytes `start..end` of the subject.
    Text(usize, usize),
    /// A position capture: the 1-based index in the subject.
    Position(usize),
}

/// The state of one match, reset before each start position
/// (`reprepstate` in C).
pub(crate) struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    depth: u32,
    level: usize,
    /// (start, length or `CAP_*`) of each capture.
    capture: [(usize, isize); MAX_CAPTURES],
    /// Steps not yet handed to the meter.
    work: u64,
    /// Takes a number of steps; false stops the match.
    meter: &'a mut dyn FnMut(u64) -> bool,
}

impl<'a> Matcher<'a> {
    /// `pat` is the pattern without its anchor; `work` carries steps counted
    /// by earlier matches but not yet charged.
    pub fn new(
        src: &'a [u8],
        pat: &'a [u8],
        work: u64,
        meter: &'a mut dyn FnMut(u64) -> bool,
    ) -> Matcher<'a> {
        Matcher {
            src,
            pat,
            depth: MAX_DEPTH,
            level: 0,
            capture: [(0, 0); MAX_CAPTURES],
            work,
            meter,
        }
    }

    /// Steps counted and not yet charged, for the next matcher to carry on.
    pub fn pending_work(&self) -> u64 {
        self.work
    }

    /// Tries the pattern at `s` exactly; returns where the match ends.
    pub fn match_at(&mut self, s: usize) -> Result<Option<usize>, PatternError> {
        self.depth = MAX_DEPTH;
        self.level = 0;
        self.do_match(s, 0)
    }

    /// Counts work that is not a match step (plain searches, copies).
    pub fn charge(&mut self, n: u64) -> Result<(), PatternError> {
        self.step(n)
    }

    /// Capture `i` of the last match (`get_onecapture`): with no captures,
    /// capture 0 is the whole match `s..e`.
    pub fn capture(&self, i: usize, s: usize, e: usize) -> Result<Capture, PatternError> {
        if i >= self.level {
            if i != 0 {
                return Err(PatternError::InvalidCaptureIndex(i as i32 + 1));
            }
            return Ok(Capture::Text(s, e));
        }
        let (init, len) = self.capture[i];
        match len {
            CAP_UNFINISHED => Err(PatternError::UnfinishedCapture),
            CAP_POSITION => Ok(Capture::Position(init + 1)),
            l => Ok(Capture::Text(init, init + l as usize)),
        }
    }

    /// All captures of the last match (`push_captures`); `whole` is the match
    /// itself, pushed when there are no captures (`None` for `find`).
    pub fn captures(&self, whole: Option<(usize, usize)>) -> Result<Vec<Capture>, PatternError> {
        let (s, e) = whole.unwrap_or((0, 0));
        let n = if self.level == 0 && whole.is_some() {
            1
        } else {
            self.level
        };
        (0..n).map(|i| self.capture(i, s, e)).collect()
    }

    #[inline]
    fn step(&mut self, n: u64) -> Result<(), PatternError> {
        self.work += n;
        if self.work >= CHECK_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    #[cold]
    fn flush(&mut self) -> Result<(), PatternError> {
        let work = std::mem::take(&mut self.work);
        if (self.meter)(work) {
            Ok(())
        } else {
            Err(PatternError::Stopped)
        }
    }

    #[inline]
    fn p(&self, i: usize) -> u8 {
        self.pat.get(i).copied().unwrap_or(0)
    }

    #[inline]
    fn s(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    /// Where the single-character class starting at `p` ends (`classend`).
    fn class_end(&self, mut p: usize) -> Result<usize, PatternError> {
        let c = self.p(p);
        p += 1;
        match c {
            b'%' => {
                if p >= self.pat.len() {
                    return Err(PatternError::EndsWithEscape);
                }
                Ok(p + 1)
            }
            b'[' => {
                if self.p(p) == b'^' {
                    p += 1;
                }
                // The first character is part of the set even when it is `]`.
                loop {
                    if p >= self.pat.len() {
                        return Err(PatternError::MissingBracket);
                    }
                    let c = self.pat[p];
                    p += 1;
                    if c == b'%' && p < self.pat.len() {
                        p += 1;
                    }
                    if self.p(p) == b']' {
                        return Ok(p + 1);
                    }
                }
            }
            _ => Ok(p),
        }
    }

    /// Whether the set `[...]` from `p` (its `[`) to `ec` (its `]`) holds `c`.
    fn bracket(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if self.p(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                return !sig;
            }
            let pc = self.pat[p];
            if pc == b'%' {
                p += 1;
                if class_matches(c, self.p(p)) {
                    return sig;
                }
            } else if self.p(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if pc <= c && c <= self.pat[p] {
                    return sig;
                }
            } else if pc == c {
                return sig;
            }
        }
    }

    /// Whether the subject byte at `s` matches the class `p..ep`.
    #[inline]
    fn single(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.pat[p] {
            b'.' => true,
            b'%' => class_matches(c, self.p(p + 1)),
            b'[' => self.bracket(c, p, ep - 1),
            pc => pc == c,
        }
    }

    /// `match` of lstrlib.c: the `goto init` tail calls are the loop. Kept
    /// as one function (about 80 lines), like the C it follows case by case.
    fn do_match(&mut self, mut s: usize, mut p: usize) -> Result<Option<usize>, PatternError> {
        if self.depth == 0 {
            return Err(PatternError::TooComplex);
        }
        self.depth -= 1;
        let result = loop {
            self.step(1)?;
            if p >= self.pat.len() {
                break Some(s);
            }
            match self.pat[p] {
                b'(' => {
                    break if self.p(p + 1) == b')' {
                        self.start_capture(s, p + 2, CAP_POSITION)?
                    } else {
                        self.start_capture(s, p + 1, CAP_UNFINISHED)?
                    };
                }
                b')' => break self.end_capture(s, p + 1)?,
                b'$' if p + 1 == self.pat.len() => break (s == self.src.len()).then_some(s),
                b'%' if self.p(p + 1) == b'b' => match self.balance(s, p + 2)? {
                    Some(e) => {
                        s = e;
                        p += 4;
                    }
                    None => break None,
                },
                b'%' if self.p(p + 1) == b'f' => {
                    p += 2;
                    if self.p(p) != b'[' {
                        return Err(PatternError::MissingFrontierSet);
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.s(s - 1) };
                    if !self.bracket(previous, p, ep - 1) && self.bracket(self.s(s), p, ep - 1) {
                        p = ep;
                    } else {
                        break None;
                    }
                }
                b'%' if self.p(p + 1).is_ascii_digit() => {
                    match self.match_capture(s, self.p(p + 1))? {
                        Some(e) => {
                            s = e;
                            p += 2;
                        }
                        None => break None,
                    }
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let suffix = self.p(ep);
                    if !self.single(s, p, ep) {
                        if matches!(suffix, b'*' | b'?' | b'-') {
                            p = ep + 1;
                        } else {
                            break None;
                        }
                    } else {
                        match suffix {
                            b'?' => {
                                if let Some(r) = self.do_match(s + 1, ep + 1)? {
                                    break Some(r);
                                }
                                p = ep + 1;
                            }
                            b'+' => break self.max_expand(s + 1, p, ep)?,
                            b'*' => break self.max_expand(s, p, ep)?,
                            b'-' => break self.min_expand(s, p, ep)?,
                            _ => {
                                s += 1;
                                p = ep;
                            }
                        }
                    }
                }
            }
        };
        self.depth += 1;
        Ok(result)
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Result<Option<usize>, PatternError> {
        let mut i = 0;
        while self.single(s + i, p, ep) {
            i += 1;
        }
        self.step(i as u64)?;
        loop {
            if let Some(r) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(r));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(
        &mut self,
        mut s: usize,
        p: usize,
        ep: usize,
    ) -> Result<Option<usize>, PatternError> {
        loop {
            if let Some(r) = self.do_match(s, ep + 1)? {
                return Ok(Some(r));
            }
            if self.single(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(
        &mut self,
        s: usize,
        p: usize,
        what: isize,
    ) -> Result<Option<usize>, PatternError> {
        if self.level >= MAX_CAPTURES {
            return Err(PatternError::TooManyCaptures);
        }
        self.capture[self.level] = (s, what);
        self.level += 1;
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.level -= 1;
        }
        Ok(r)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        let l = (0..self.level)
            .rev()
            .find(|&l| self.capture[l].1 == CAP_UNFINISHED)
            .ok_or(PatternError::InvalidPatternCapture)?;
        self.capture[l].1 = (s - self.capture[l].0) as isize;
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.capture[l].1 = CAP_UNFINISHED;
        }
        Ok(r)
    }

    /// A back-reference `%1`-`%9` (`%0` is an invalid index, as in C).
    fn match_capture(&mut self, s: usize, digit: u8) -> Result<Option<usize>, PatternError> {
        let l = digit as i32 - b'1' as i32;
        if l < 0 || l as usize >= self.level || self.capture[l as usize].1 == CAP_UNFINISHED {
            return Err(PatternError::InvalidCaptureIndex(l + 1));
        }
        let (init, len) = self.capture[l as usize];
        // A position capture has no text: it never matches (C compares a
        // huge unsigned length).
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        self.step(len as u64 / 16)?;
        if self.src.len() - s >= len && self.src[init..init + len] == self.src[s..s + len] {
            Ok(Some(s + len))
        } else {
            Ok(None)
        }
    }

    /// `%bxy` at `p` (pointing at `x`).
    fn balance(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        if p + 1 >= self.pat.len() {
            return Err(PatternError::MissingBalanceArguments);
        }
        if self.s(s) != self.pat[p] {
            return Ok(None);
        }
        let (open, close) = (self.pat[p], self.pat[p + 1]);
        let mut depth = 1usize;
        let mut i = s + 1;
        while i < self.src.len() {
            let c = self.src[i];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    self.step((i - s) as u64)?;
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
            i += 1;
        }
        self.step((i - s) as u64)?;
        Ok(None)
    }
}

/// `%x` classes in the C locale (`match_class`); an upper-case class letter
/// is the complement, any other character stands for itself.
fn class_matches(c: u8, class: u8) -> bool {
    let res = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        // C's isspace includes the vertical tab, Rust's is_ascii_whitespace does not.
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0,
        _ => return class == c,
    };
    if class.is_ascii_lowercase() {
        res
    } else {
        !res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(src: &str, pat: &str) -> Result<Option<(usize, usize)>, PatternError> {
        let mut meter = |_| true;
        let mut m = Matcher::new(src.as_bytes(), pat.as_bytes(), 0, &mut meter);
        for s in 0..=src.len() {
            if let Some(e) = m.match_at(s)? {
                return Ok(Some((s, e)));
            }
        }
        Ok(None)
    }

    #[test]
    fn classes_follow_the_c_locale() {
        assert!(class_matches(0x0b, b's'));
        assert!(!class_matches(0xe9, b'a'));
        assert!(class_matches(0xe9, b'A'));
        assert!(class_matches(b'.', b'.'));
        assert!(class_matches(127, b'c'));
    }

    #[test]
    fn the_usual_patterns_match() {
        assert_eq!(first("hello world", "o w"), Ok(Some((4, 7))));
        assert_eq!(first("key = value", "%w+$"), Ok(Some((6, 11))));
        assert_eq!(first("f(a(b)c)d", "%b()"), Ok(Some((1, 8))));
        assert_eq!(first("THE (quick) fox", "%f[%a]%a+"), Ok(Some((0, 3))));
        assert_eq!(first("abcabc", "(abc)%1"), Ok(Some((0, 6))));
        assert_eq!(first("]", "[]]"), Ok(Some((0, 1))));
        assert_eq!(first("a-b", "[a%-]+"), Ok(Some((0, 2))));
    }

    #[test]
    fn malformed_patterns_are_named() {
        assert_eq!(first("a", "%"), Err(PatternError::EndsWithEscape));
        assert_eq!(first("a", "[a"), Err(PatternError::MissingBracket));
        assert_eq!(first("a", "%b"), Err(PatternError::MissingBalanceArguments));
        assert_eq!(first("a", "%fa"), Err(PatternError::MissingFrontierSet));
        assert_eq!(first("a", "%1"), Err(PatternError::InvalidCaptureIndex(1)));
        assert_eq!(first("a", "a)"), Err(PatternError::InvalidPatternCapture));
        assert_eq!(
            PatternError::InvalidCaptureIndex(0).to_string(),
            "invalid capture index %0"
        );
    }

    #[test]
    fn deep_recursion_is_too_complex_not_a_stack_overflow() {
        let src = "a".repeat(1000);
        assert_eq!(
            first(&src, &"a?".repeat(1000)),
            Err(PatternError::TooComplex)
        );
        assert_eq!(
            first(&src, &"(".repeat(40)),
            Err(PatternError::TooManyCaptures)
        );
    }

    #[test]
    fn the_meter_stops_a_runaway_match() {
        let src = "a".repeat(26);
        let pat = format!("{}b", "a*".repeat(13));
        let mut charged = 0u64;
        let mut meter = |n| {
            charged += n;
            charged < 1_000_000
        };
        let mut m = Matcher::new(src.as_bytes(), pat.as_bytes(), 0, &mut meter);
        assert_eq!(m.match_at(0), Err(PatternError::Stopped));
        assert!(charged >= 1_000_000);
    }
}
