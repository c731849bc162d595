//! `string.find`, `string.match`, `string.gmatch` and `string.gsub` with Lua
//! 5.4's exact semantics, on a matcher that counts its steps against the
//! running action's budget. C Lua's matcher runs inside one C call, where
//! neither the instruction hook nor the timeout reaches, and a pattern like
//! `("a*"):rep(13).."b"` backtracks for minutes: these replace it in every
//! sandboxed state.
//!
//! Each function is a Rust function behind a small C entry point. The Rust
//! side hands errors of the caller's making (a malformed pattern, a bad
//! argument) back as values, and the entry point raises them as C Lua does:
//! plain strings carrying the caller's position, so `pcall` sees what it
//! would see with C Lua (mlua would raise them as userdata). A budget that
//! runs out is raised from Rust, as the budget hook does.

mod matcher;

use std::borrow::Cow;
use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mlua::{ffi, Function, Lua, LuaString, MultiValue, Table, Value};

use crate::sandbox::Budget;
use matcher::{Capture, Matcher, PatternError};

/// A gsub checks the memory budget each time its result grew by this much.
const HOLD_EVERY: usize = 1 << 20;

/// Characters that make a pattern more than a plain string (`SPECIALS`).
const SPECIALS: &[u8] = b"^$*+?.([%-";

/// Replaces the four pattern functions of `lua`'s `string` table (and so the
/// methods of strings) with the Rust ones, bounded only by C Lua's recursion
/// limit. The robot's states use the budgeted ones (`install_metered`).
pub fn install(lua: &Lua) -> mlua::Result<()> {
    install_with(lua, None)
}

/// As [`install`], each match step charged to `budget` as one instruction.
pub(crate) fn install_metered(lua: &Lua, budget: Arc<Budget>) -> mlua::Result<()> {
    install_with(lua, Some(budget))
}

fn install_with(lua: &Lua, budget: Option<Arc<Budget>>) -> mlua::Result<()> {
    let fail = lua.create_table()?;
    let ctx = Arc::new(Ctx {
        budget,
        pending: AtomicU64::new(0),
        fail: fail.clone(),
    });
    let c = ctx.clone();
    let find_fn =
        lua.create_function(move |lua, args: MultiValue| c.reply(lua, find(lua, &c, &args, true)))?;
    let c = ctx.clone();
    let match_fn = lua
        .create_function(move |lua, args: MultiValue| c.reply(lua, find(lua, &c, &args, false)))?;
    let c = ctx.clone();
    let gmatch_fn = lua.create_function(move |lua, args: MultiValue| {
        let r = gmatch(lua, &c, &args);
        c.reply(lua, r)
    })?;
    let c = ctx.clone();
    let gsub_fn =
        lua.create_function(move |lua, args: MultiValue| c.reply(lua, gsub(lua, &c, &args)))?;
    let string: Table = lua.globals().get("string")?;
    for (name, f, entry) in [
        ("find", find_fn, call_and_raise as ffi::lua_CFunction),
        ("match", match_fn, call_and_raise),
        ("gmatch", gmatch_fn, gmatch_entry),
        ("gsub", gsub_fn, call_and_raise),
    ] {
        // SAFETY: the closure is made from the two values exec_raw pushed.
        let entry: Function = unsafe {
            lua.exec_raw((f, fail.clone()), |state| {
                ffi::lua_pushcclosure(state, entry, 2)
            })?
        };
        string.raw_set(name, entry)?;
    }
    Ok(())
}

/// The function templates call: a C closure over the Rust function
/// (upvalue 1) and the failure marker (upvalue 2). It calls the Rust function
/// with its arguments and, when it hands back a failure, raises the message
/// from here, as C Lua's `luaL_error` would: with the position of the caller
/// (`luaL_where(L, 1)`) unless the error was raised by Lua code already.
///
/// SAFETY: called by Lua only, as the C function it was made as. Its frame
/// holds no Rust value with a destructor, so Lua's error jumping over it is
/// sound (mlua raises its own errors the same way).
unsafe extern "C-unwind" fn call_and_raise(state: *mut ffi::lua_State) -> c_int {
    let n = ffi::lua_gettop(state);
    ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
    ffi::lua_insert(state, 1);
    ffi::lua_call(state, n, ffi::LUA_MULTRET);
    if ffi::lua_gettop(state) == 3 && ffi::lua_rawequal(state, 1, ffi::lua_upvalueindex(2)) != 0 {
        ffi::luaL_checkstack(state, 2, std::ptr::null());
        if ffi::lua_tointeger(state, 3) > 0 {
            ffi::luaL_where(state, 1);
            ffi::lua_pushvalue(state, 2);
            ffi::lua_concat(state, 2);
        } else {
            ffi::lua_pushvalue(state, 2);
        }
        ffi::lua_error(state);
    }
    ffi::lua_gettop(state)
}

/// `gmatch`: as [`call_and_raise`], then the Rust iterator it returned is
/// wrapped the same way, since the iterator raises the pattern's errors.
///
/// SAFETY: as [`call_and_raise`].
unsafe extern "C-unwind" fn gmatch_entry(state: *mut ffi::lua_State) -> c_int {
    call_and_raise(state);
    ffi::lua_settop(state, 1);
    ffi::lua_pushvalue(state, ffi::lua_upvalueindex(2));
    ffi::lua_pushcclosure(state, call_and_raise, 2);
    1
}

/// What the four functions share in one state.
struct Ctx {
    budget: Option<Arc<Budget>>,
    /// Steps counted by earlier calls and not yet charged (they are charged
    /// in batches): so many small matches add up like one long one.
    pending: AtomicU64,
    /// The marker of a failure handed to the wrapper.
    fail: Table,
}

/// How a call failed.
enum Fail {
    /// The caller's fault: raised at the caller's position (level 2).
    Caller(String),
    /// An error raised by the Lua code of a replacement: raised unchanged.
    Raised(Value),
    /// Raised from Rust as it is (a spent budget, out of memory).
    Lua(mlua::Error),
}

impl From<PatternError> for Fail {
    fn from(e: PatternError) -> Fail {
        match e {
            PatternError::Stopped => Fail::Lua(mlua::Error::runtime(e.to_string())),
            e => Fail::Caller(e.to_string()),
        }
    }
}

impl From<mlua::Error> for Fail {
    fn from(e: mlua::Error) -> Fail {
        Fail::Lua(e)
    }
}

type Reply = Result<MultiValue, Fail>;

impl Ctx {
    fn reply(&self, lua: &Lua, r: Reply) -> mlua::Result<MultiValue> {
        let (message, level) = match r {
            Ok(v) => return Ok(v),
            Err(Fail::Lua(e)) => return Err(e),
            Err(Fail::Caller(m)) => (Value::String(lua.create_string(m)?), 2),
            Err(Fail::Raised(v)) => (v, 0),
        };
        Ok(MultiValue::from_vec(vec![
            Value::Table(self.fail.clone()),
            message,
            Value::Integer(level),
        ]))
    }

    /// Fails at once when the action was stopped already: code that catches
    /// the error (`pcall` in a loop) then reaches the budget hook quickly.
    fn alive(&self) -> Result<(), Fail> {
        match &self.budget {
            Some(b) if b.killed().is_some() => Err(PatternError::Stopped.into()),
            _ => Ok(()),
        }
    }

    /// Counts `work` steps done without a matcher.
    fn charge(&self, lua: &Lua, work: u64) -> Result<(), Fail> {
        let pending = self.pending.load(Ordering::Relaxed) + work;
        if pending < matcher::CHECK_EVERY {
            self.pending.store(pending, Ordering::Relaxed);
            return Ok(());
        }
        self.pending.store(0, Ordering::Relaxed);
        match &self.budget {
            Some(b) if b.charge(lua, pending).is_some() => Err(PatternError::Stopped.into()),
            _ => Ok(()),
        }
    }

    /// Fails, as a spent budget, when `bytes` more held outside the Lua heap
    /// would pass the action's memory budget: a gsub result is built in a
    /// Rust buffer, out of reach of the state's allocator.
    fn hold(&self, lua: &Lua, bytes: usize) -> Result<(), Fail> {
        match &self.budget {
            Some(b) if b.hold(lua, bytes).is_some() => Err(PatternError::Stopped.into()),
            _ => Ok(()),
        }
    }

    /// Runs `f` with a matcher over `src` and `pat`, carrying the pending steps.
    fn with_matcher<R>(
        &self,
        lua: &Lua,
        src: &[u8],
        pat: &[u8],
        f: impl FnOnce(&mut Matcher<'_>) -> R,
    ) -> R {
        let budget = self.budget.clone();
        let mut meter = move |work: u64| match &budget {
            Some(b) => b.charge(lua, work).is_none(),
            None => true,
        };
        let mut m = Matcher::new(src, pat, self.pending.load(Ordering::Relaxed), &mut meter);
        let r = f(&mut m);
        self.pending.store(m.pending_work(), Ordering::Relaxed);
        r
    }
}

/// `lua_typename` of a value, as C Lua's argument errors name it.
fn type_name(v: Option<&Value>) -> String {
    match v {
        None => "no value".into(),
        Some(Value::Table(t)) => t
            .metatable()
            .and_then(|m| m.raw_get::<Option<String>>("__name").ok().flatten())
            .unwrap_or_else(|| "table".into()),
        Some(Value::Integer(_) | Value::Number(_)) => "number".into(),
        Some(Value::LightUserData(_)) => "light userdata".into(),
        Some(Value::UserData(_) | Value::Error(_)) => "userdata".into(),
        Some(v) => v.type_name().into(),
    }
}

/// `luaL_argerror`: the function named as the caller's code names it, and
/// `self` not counted in a method call.
fn arg_error(lua: &Lua, mut arg: usize, fname: &str, extra: &str) -> Fail {
    // Level 0 is this Rust function, level 1 the wrapper the template called.
    let (name, what) = lua
        .inspect_stack(1, |d| {
            let n = d.names();
            (n.name.map(|s| s.into_owned()), n.name_what)
        })
        .unwrap_or((None, None));
    if what == Some("method") {
        arg -= 1;
        if arg == 0 {
            let name = name.unwrap_or_else(|| "?".into());
            return Fail::Caller(format!("calling '{name}' on bad self ({extra})"));
        }
    }
    let name = name.unwrap_or_else(|| format!("string.{fname}"));
    Fail::Caller(format!("bad argument #{arg} to '{name}' ({extra})"))
}

/// `luaL_checklstring`: a string, or a number turned into one.
/// A string argument is borrowed, not cloned: each clone is a new reference
/// in the state.
fn check_string<'a>(
    lua: &Lua,
    args: &'a MultiValue,
    i: usize,
    fname: &str,
) -> Result<Cow<'a, LuaString>, Fail> {
    let v = args.get(i);
    match v {
        Some(Value::String(s)) => Ok(Cow::Borrowed(s)),
        Some(n @ (Value::Integer(_) | Value::Number(_))) => Ok(Cow::Owned(
            lua.coerce_string(n.clone())?
                .ok_or_else(|| arg_error(lua, i + 1, fname, "string expected, got number"))?,
        )),
        _ => Err(arg_error(
            lua,
            i + 1,
            fname,
            &format!("string expected, got {}", type_name(v)),
        )),
    }
}

/// `luaL_optinteger`.
fn opt_integer(
    lua: &Lua,
    args: &MultiValue,
    i: usize,
    fname: &str,
    default: i64,
) -> Result<i64, Fail> {
    let v = match args.get(i) {
        None | Some(Value::Nil) => return Ok(default),
        Some(v) => v,
    };
    if let Some(n) = lua.coerce_integer(v.clone())? {
        return Ok(n);
    }
    let extra = if lua.coerce_number(v.clone())?.is_some() {
        "number has no integer representation".to_string()
    } else {
        format!("number expected, got {}", type_name(Some(v)))
    };
    Err(arg_error(lua, i + 1, fname, &extra))
}

/// `posrelatI(init, len) - 1`: a 0-based start, possibly past the end.
fn start_index(init: i64, len: usize) -> u64 {
    let len = len as i64;
    let pos = if init > 0 {
        init
    } else if init == 0 || init < -len {
        1
    } else {
        len + init + 1
    };
    pos as u64 - 1
}

fn push_capture(lua: &Lua, out: &mut Vec<Value>, src: &[u8], c: Capture) -> mlua::Result<()> {
    out.push(match c {
        Capture::Text(a, b) => Value::String(lua.create_string(&src[a..b])?),
        Capture::Position(i) => Value::Integer(i as i64),
    });
    Ok(())
}

fn nil() -> MultiValue {
    MultiValue::from_vec(vec![Value::Nil])
}

/// `str_find_aux`: `find` when `find` is true, else `match`.
fn find(lua: &Lua, ctx: &Ctx, args: &MultiValue, find: bool) -> Reply {
    ctx.alive()?;
    let fname = if find { "find" } else { "match" };
    let s = check_string(lua, args, 0, fname)?;
    let p = check_string(lua, args, 1, fname)?;
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let init = start_index(opt_integer(lua, args, 2, fname, 1)?, src.len());
    if init > src.len() as u64 {
        return Ok(nil());
    }
    let init = init as usize;
    let plain = find
        && (matches!(args.get(3), Some(v) if !matches!(v, Value::Nil | Value::Boolean(false)))
            || !pat.iter().any(|c| SPECIALS.contains(c)));
    if plain {
        // memmem is linear in the subject, where C's naive search is not;
        // still, a loop of searches through a long subject is counted.
        ctx.charge(lua, (src.len() - init) as u64 / 16)?;
        return Ok(match plain_find(&src[init..], &pat) {
            Some(i) => MultiValue::from_vec(vec![
                Value::Integer((init + i + 1) as i64),
                Value::Integer((init + i + pat.len()) as i64),
            ]),
            None => nil(),
        });
    }
    let (anchor, pat) = match pat.first() {
        Some(b'^') => (true, &pat[1..]),
        _ => (false, &pat[..]),
    };
    ctx.with_matcher(lua, &src, pat, |m| {
        let mut s1 = init;
        loop {
            if let Some(e) = m.match_at(s1)? {
                let mut out = Vec::new();
                if find {
                    out.push(Value::Integer(s1 as i64 + 1));
                    out.push(Value::Integer(e as i64));
                    for c in m.captures(None)? {
                        push_capture(lua, &mut out, &src, c)?;
                    }
                } else {
                    for c in m.captures(Some((s1, e)))? {
                        push_capture(lua, &mut out, &src, c)?;
                    }
                }
                return Ok(MultiValue::from_vec(out));
            }
            s1 += 1;
            if s1 > src.len() || anchor {
                return Ok(nil());
            }
        }
    })
}

/// Where `needle` first occurs in `haystack`. A short haystack is searched
/// directly: preparing memmem's searcher costs more than the search.
fn plain_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    if haystack.len() < 256 {
        return haystack.windows(needle.len()).position(|w| w == needle);
    }
    memchr::memmem::find(haystack, needle)
}

/// `gmatch`: the iterator remembers where it is and where the last match
/// ended (an empty match right there is skipped). `^` is no anchor here.
fn gmatch(lua: &Lua, ctx: &Arc<Ctx>, args: &MultiValue) -> Reply {
    ctx.alive()?;
    let s = check_string(lua, args, 0, "gmatch")?.into_owned();
    let p = check_string(lua, args, 1, "gmatch")?.into_owned();
    let len = s.as_bytes().len();
    let init = start_index(opt_integer(lua, args, 2, "gmatch", 1)?, len).min(len as u64 + 1);
    let mut at = init as usize;
    let mut last: Option<usize> = None;
    let c = ctx.clone();
    let iter = lua.create_function_mut(move |lua, ()| {
        let r = gmatch_next(lua, &c, &s, &p, &mut at, &mut last);
        c.reply(lua, r)
    })?;
    Ok(MultiValue::from_vec(vec![Value::Function(iter)]))
}

/// One step of a `gmatch` iterator (`gmatch_aux`).
fn gmatch_next(
    lua: &Lua,
    ctx: &Ctx,
    s: &LuaString,
    p: &LuaString,
    at: &mut usize,
    last: &mut Option<usize>,
) -> Reply {
    ctx.alive()?;
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    ctx.with_matcher(lua, &src, &pat, |m| {
        while *at <= src.len() {
            if let Some(e) = m.match_at(*at)? {
                if Some(e) != *last {
                    let start = *at;
                    *at = e;
                    *last = Some(e);
                    let mut out = Vec::new();
                    for cap in m.captures(Some((start, e)))? {
                        push_capture(lua, &mut out, &src, cap)?;
                    }
                    return Ok(MultiValue::from_vec(out));
                }
            }
            *at += 1;
        }
        Ok(MultiValue::new())
    })
}

/// The replacement of `gsub`, checked once.
enum Repl {
    Text(LuaString),
    Table(Table),
    Function(Function),
}

/// `str_gsub`.
fn gsub(lua: &Lua, ctx: &Ctx, args: &MultiValue) -> Reply {
    ctx.alive()?;
    let s = check_string(lua, args, 0, "gsub")?;
    let p = check_string(lua, args, 1, "gsub")?;
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let max = opt_integer(lua, args, 3, "gsub", src.len() as i64 + 1)?;
    let repl = match args.get(2) {
        Some(Value::String(r)) => Repl::Text(r.clone()),
        Some(n @ (Value::Integer(_) | Value::Number(_))) => Repl::Text(
            lua.coerce_string(n.clone())?
                .ok_or_else(|| mlua::Error::runtime("cannot turn a number into a string"))?,
        ),
        Some(Value::Table(t)) => Repl::Table(t.clone()),
        Some(Value::Function(f)) => Repl::Function(f.clone()),
        v => {
            return Err(arg_error(
                lua,
                3,
                "gsub",
                &format!("string/function/table expected, got {}", type_name(v)),
            ))
        }
    };
    let (anchor, pat) = match pat.first() {
        Some(b'^') => (true, &pat[1..]),
        _ => (false, &pat[..]),
    };
    let repl_text = match &repl {
        Repl::Text(r) => Some(r.as_bytes()),
        _ => None,
    };
    let (out, n, changed) = ctx.with_matcher(lua, &src, pat, |m| -> Result<_, Fail> {
        let mut out: Vec<u8> = Vec::new();
        let mut at = 0usize;
        let mut last: Option<usize> = None;
        let mut n: i64 = 0;
        let mut changed = false;
        let mut next_hold = HOLD_EVERY;
        while n < max {
            if out.len() >= next_hold {
                ctx.hold(lua, out.len())?;
                next_hold = out.len() + HOLD_EVERY;
            }
            match m.match_at(at)? {
                Some(e) if Some(e) != last => {
                    n += 1;
                    changed |=
                        add_value(lua, m, &mut out, &src, at, e, &repl, repl_text.as_deref())?;
                    at = e;
                    last = Some(e);
                }
                _ if at < src.len() => {
                    out.push(src[at]);
                    at += 1;
                }
                _ => break,
            }
            if anchor {
                break;
            }
        }
        out.extend_from_slice(&src[at..]);
        m.charge(out.len() as u64 / 16)?;
        Ok((out, n, changed))
    })?;
    let result = if changed {
        lua.create_string(out)?
    } else {
        s.into_owned()
    };
    Ok(MultiValue::from_vec(vec![
        Value::String(result),
        Value::Integer(n),
    ]))
}

/// Appends the replacement of the match `s..e` (`add_value`); tells whether
/// it changed the text (a function or table giving false or nil does not).
#[allow(clippy::too_many_arguments)]
fn add_value(
    lua: &Lua,
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    src: &[u8],
    s: usize,
    e: usize,
    repl: &Repl,
    text: Option<&[u8]>,
) -> Result<bool, Fail> {
    let value = match repl {
        Repl::Text(_) => {
            add_text(m, out, src, s, e, text.unwrap_or_default())?;
            return Ok(true);
        }
        Repl::Table(t) => {
            let mut args = vec![Value::Table(t.clone())];
            push_capture(lua, &mut args, src, m.capture(0, s, e)?)?;
            call_raw(lua, Callee::Index, args)?
        }
        Repl::Function(f) => {
            let mut args = Vec::new();
            for c in m.captures(Some((s, e)))? {
                push_capture(lua, &mut args, src, c)?;
            }
            call_raw(lua, Callee::Function(f), args)?
        }
    };
    match value {
        Value::Nil | Value::Boolean(false) => {
            out.extend_from_slice(&src[s..e]);
            Ok(false)
        }
        Value::String(r) => {
            out.extend_from_slice(&r.as_bytes());
            Ok(true)
        }
        n @ (Value::Integer(_) | Value::Number(_)) => {
            if let Some(r) = lua.coerce_string(n)? {
                out.extend_from_slice(&r.as_bytes());
            }
            Ok(true)
        }
        v => Err(Fail::Caller(format!(
            "invalid replacement value (a {})",
            type_name(Some(&v))
        ))),
    }
}

/// What a replacement calls.
enum Callee<'a> {
    Function(&'a Function),
    /// `t[k]` with its metamethods (`lua_gettable`).
    Index,
}

/// Calls the replacement's Lua code as C Lua does: a Lua error comes back
/// as the very value raised (mlua would turn it into a string with a
/// traceback), to be raised on unchanged.
fn call_raw(lua: &Lua, callee: Callee<'_>, args: Vec<Value>) -> Result<Value, Fail> {
    let mut args = MultiValue::from_vec(args);
    let mut status = ffi::LUA_OK;
    // SAFETY: the closure sees exactly the values exec_raw pushed (the
    // callee, then its arguments) and leaves two: whether the call
    // succeeded, and its result or error. lua_pcall catches every error.
    let (ok, value): (bool, Value) = unsafe {
        let status = &mut status;
        match callee {
            Callee::Function(f) => {
                args.push_front(Value::Function(f.clone()));
                lua.exec_raw(args, |state| {
                    let n = ffi::lua_gettop(state) - 1;
                    *status = ffi::lua_pcall(state, n, 1, 0);
                    ffi::lua_pushboolean(state, (*status == ffi::LUA_OK) as c_int);
                    ffi::lua_insert(state, -2);
                })?
            }
            Callee::Index => lua.exec_raw(args, |state| {
                ffi::lua_pushcfunction(state, index);
                ffi::lua_insert(state, 1);
                *status = ffi::lua_pcall(state, 2, 1, 0);
                ffi::lua_pushboolean(state, (*status == ffi::LUA_OK) as c_int);
                ffi::lua_insert(state, -2);
            })?,
        }
    };
    if ok {
        Ok(value)
    } else if status == ffi::LUA_ERRMEM {
        Err(Fail::Lua(mlua::Error::MemoryError(
            "not enough memory".into(),
        )))
    } else {
        Err(Fail::Raised(value))
    }
}

/// `t[k]`, as a C function so that `lua_pcall` can catch its metamethods'
/// errors.
///
/// SAFETY: called by `lua_pcall` with the table and the key.
unsafe extern "C-unwind" fn index(state: *mut ffi::lua_State) -> c_int {
    ffi::lua_gettable(state, 1);
    1
}

/// A replacement string (`add_s`): `%0`-`%9` are captures, `%%` is `%`.
fn add_text(
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    src: &[u8],
    s: usize,
    e: usize,
    text: &[u8],
) -> Result<(), Fail> {
    let mut rest = text;
    while let Some(i) = memchr::memchr(b'%', rest) {
        out.extend_from_slice(&rest[..i]);
        let c = rest.get(i + 1).copied().unwrap_or(0);
        if c == b'%' {
            out.push(b'%');
        } else if c == b'0' {
            out.extend_from_slice(&src[s..e]);
        } else if c.is_ascii_digit() {
            match m.capture((c - b'1') as usize, s, e)? {
                Capture::Text(a, b) => out.extend_from_slice(&src[a..b]),
                Capture::Position(p) => out.extend_from_slice(p.to_string().as_bytes()),
            }
        } else {
            return Err(Fail::Caller(
                "invalid use of '%' in replacement string".into(),
            ));
        }
        rest = rest.get(i + 2..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    Ok(())
}
