//! REDCap's logic syntax, as Export Records' `filterLogic` takes it: a
//! parser that checks the logic against the project once, and an evaluator
//! run on each exported row (no re-read: the row's record is in hand).
//!
//! Supported: `[field]`, `[event][field]` (longitudinal), `[field(code)]`
//! for checkboxes (`1` checked, `0` not), string (`'…'`, `"…"`) and number
//! literals, `true`/`false`, `=` `==` `<>` `!=` `<` `<=` `>` `>=`, `+ - * /`,
//! `and`/`or`/`not` in any case with `&&`/`||`/`!`, parentheses,
//! `datediff(a, b, unit[, format][, signed])`, `sum(…)`, `if(c, a, b)`,
//! `round`, `abs`, `min`, `max`, `mean`, `isblankormissingcode`, and the
//! smart variables `[record-name]`, `[event-name]`, `[event-label]`,
//! `[arm-number]`, `[record-dag-name]`, `[current-instance]`,
//! `[user-name]`. A field may be followed by an instance, `[field][2]` or
//! `[event][field][2]` (that instance of a repeating instrument or event;
//! `[current-instance]` is the row's), and `[field:value]` is `[field]`, as
//! REDCap's `LogicTester` rewrites it.
//!
//! Comparisons follow REDCap's (PHP's) rules: two numbers compare as
//! numbers (`'1.0' = 1`), anything else as text; a blank value equals only
//! blank, and `<`, `<=`, `>`, `>=` with a blank side are false.

use std::collections::HashMap;

/// A bad logic: what is wrong, for the error's text.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicError(pub String);

/// What the logic may name: the project's fields, checkboxes, events.
pub struct Schema {
    /// Field name (`<form>_complete` included) → (form, is checkbox,
    /// checkbox codes).
    pub fields: HashMap<String, (String, bool, Vec<String>)>,
    /// Unique event name → event id (empty for a classic project).
    pub events: HashMap<String, i64>,
    /// `YYYY-MM-DD HH:MM:SS` of the request, for `today`/`now`.
    pub now: String,
}

/// A smart variable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smart {
    RecordName,
    EventName,
    EventLabel,
    ArmNumber,
    RecordDagName,
    CurrentInstance,
    UserName,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Num(f64),
    Str(String),
    /// A value read from the row: the index into [`Logic::columns`], and
    /// the event it is taken from (`None`: the row's).
    Field {
        col: usize,
        event: Option<i64>,
        /// `[field][n]`: that instance (`None`: the row's, as `value` says).
        instance: Option<i64>,
    },
    Smart(Smart),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    Arith(char, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Datediff,
    Sum,
    If,
    Round,
    Abs,
    Min,
    Max,
    Mean,
    IsBlank,
}

/// A checked logic, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Logic {
    expr: Expr,
    /// The export columns it reads (`name` or `name___code`) with their
    /// field's form, in first-use order.
    pub columns: Vec<(String, String)>,
    /// The events named by `[event][field]`.
    pub events: Vec<i64>,
    now: String,
}

/// What a row offers the evaluator.
pub trait Row {
    /// The value of `Logic::columns[col]`, in `event` (`None`: the row's
    /// own slot, or for a field of an instrument that does not repeat
    /// there, the event's first instance).
    fn value(&self, col: usize, event: Option<i64>) -> &str;
    /// The value of `Logic::columns[col]` in instance `instance` of
    /// `event` (`None`: the row's event) — `[field][n]`.
    fn value_at(&self, col: usize, event: Option<i64>, instance: i64) -> &str;
    /// A smart variable's value.
    fn smart(&self, s: Smart) -> String;
}

/// A value during evaluation: text (blank = `""`) or a number.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Num(f64),
    Text(String),
}

impl V {
    fn bool(b: bool) -> V {
        V::Num(if b { 1.0 } else { 0.0 })
    }

    fn is_blank(&self) -> bool {
        matches!(self, V::Text(s) if s.trim().is_empty())
    }

    fn num(&self) -> Option<f64> {
        match self {
            V::Num(n) => Some(*n),
            V::Text(s) => parse_number(s),
        }
    }

    fn text(&self) -> String {
        match self {
            V::Num(n) => format_number(*n),
            V::Text(s) => s.clone(),
        }
    }

    fn truthy(&self) -> bool {
        match self {
            V::Num(n) => *n != 0.0 && !n.is_nan(),
            V::Text(s) => match parse_number(s) {
                Some(n) => n != 0.0,
                None => !s.is_empty(),
            },
        }
    }
}

fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn format_number(n: f64) -> String {
    if n.is_nan() {
        String::new()
    } else if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

// ----- tokens -----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `[…]` contents.
    Bracket(String),
    Str(String),
    Num(f64),
    Word(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn tokens(src: &str) -> Result<Vec<Tok>, LogicError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let two = |a: char, b: char| c == a && next == Some(b);
        let (tok, len) = match c {
            '[' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or_else(|| LogicError("a '[' is never closed".into()))?;
                let inner: String = chars[i + 1..i + 1 + end].iter().collect();
                (Tok::Bracket(inner.trim().to_owned()), end + 2)
            }
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&q| q == c)
                    .ok_or_else(|| LogicError("a quoted text is never closed".into()))?;
                (
                    Tok::Str(chars[i + 1..i + 1 + end].iter().collect()),
                    end + 2,
                )
            }
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            _ if two('<', '>') => (Tok::Op("<>"), 2),
            _ if two('!', '=') => (Tok::Op("<>"), 2),
            _ if two('<', '=') => (Tok::Op("<="), 2),
            _ if two('>', '=') => (Tok::Op(">="), 2),
            _ if two('=', '=') => (Tok::Op("="), 2),
            _ if two('&', '&') => (Tok::Op("and"), 2),
            _ if two('|', '|') => (Tok::Op("or"), 2),
            '=' => (Tok::Op("="), 1),
            '<' => (Tok::Op("<"), 1),
            '>' => (Tok::Op(">"), 1),
            '!' => (Tok::Op("not"), 1),
            '+' => (Tok::Op("+"), 1),
            '-' => (Tok::Op("-"), 1),
            '*' => (Tok::Op("*"), 1),
            '/' => (Tok::Op("/"), 1),
            _ if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let len = chars[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_digit() || *c == '.'))
                    .unwrap_or(chars.len() - i);
                let s: String = chars[i..i + len].iter().collect();
                let n = s
                    .parse::<f64>()
                    .map_err(|_| LogicError(format!("'{s}' is not a number")))?;
                (Tok::Num(n), len)
            }
            _ if c.is_alphabetic() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .position(|c| !(c.is_alphanumeric() || *c == '_'))
                    .unwrap_or(chars.len() - i);
                let w: String = chars[i..i + len].iter().collect();
                let tok = match w.to_lowercase().as_str() {
                    "and" => Tok::Op("and"),
                    "or" => Tok::Op("or"),
                    "not" => Tok::Op("not"),
                    _ => Tok::Word(w),
                };
                (tok, len)
            }
            _ => return Err(LogicError(format!("unexpected '{c}'"))),
        };
        out.push(tok);
        i += len;
    }
    Ok(out)
}

// ----- parser -----

struct Parser<'s> {
    toks: Vec<Tok>,
    pos: usize,
    schema: &'s Schema,
    columns: Vec<(String, String)>,
    events: Vec<i64>,
}

/// Parses and checks `src` against the project.
pub fn parse(src: &str, schema: &Schema) -> Result<Logic, LogicError> {
    let toks = tokens(src)?;
    if toks.is_empty() {
        return Err(LogicError("the logic is empty".into()));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        schema,
        columns: Vec::new(),
        events: Vec::new(),
    };
    let expr = p.or()?;
    if let Some(t) = p.toks.get(p.pos) {
        return Err(LogicError(format!("unexpected {}", describe(t))));
    }
    Ok(Logic {
        expr,
        columns: p.columns,
        events: p.events,
        now: schema.now.clone(),
    })
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Bracket(b) => format!("'[{b}]'"),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Num(n) => format!("'{}'", format_number(*n)),
        Tok::Word(w) => format!("'{w}'"),
        Tok::Op(o) => format!("'{o}'"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat_op(&mut self, ops: &[&'static str]) -> Option<&'static str> {
        match self.peek() {
            Some(Tok::Op(o)) if ops.contains(o) => {
                let o = *o;
                self.pos += 1;
                Some(o)
            }
            _ => None,
        }
    }

    fn expect(&mut self, t: Tok) -> Result<(), LogicError> {
        match self.peek() {
            Some(x) if *x == t => {
                self.pos += 1;
                Ok(())
            }
            Some(x) => Err(LogicError(format!(
                "expected {} but found {}",
                describe(&t),
                describe(x)
            ))),
            None => Err(LogicError(format!("expected {} at the end", describe(&t)))),
        }
    }

    fn or(&mut self) -> Result<Expr, LogicError> {
        let mut left = self.and()?;
        while self.eat_op(&["or"]).is_some() {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, LogicError> {
        let mut left = self.not()?;
        while self.eat_op(&["and"]).is_some() {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, LogicError> {
        if self.eat_op(&["not"]).is_some() {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, LogicError> {
        let left = self.sum()?;
        let Some(op) = self.eat_op(&["=", "<>", "<", "<=", ">", ">="]) else {
            return Ok(left);
        };
        let cmp = match op {
            "=" => Cmp::Eq,
            "<>" => Cmp::Ne,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            _ => Cmp::Ge,
        };
        let right = self.sum()?;
        Ok(Expr::Cmp(cmp, Box::new(left), Box::new(right)))
    }

    fn sum(&mut self) -> Result<Expr, LogicError> {
        let mut left = self.product()?;
        while let Some(op) = self.eat_op(&["+", "-"]) {
            let right = self.product()?;
            left = Expr::Arith(
                op.chars().next().unwrap_or('+'),
                Box::new(left),
                Box::new(right),
            );
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, LogicError> {
        let mut left = self.unary()?;
        while let Some(op) = self.eat_op(&["*", "/"]) {
            let right = self.unary()?;
            left = Expr::Arith(
                op.chars().next().unwrap_or('*'),
                Box::new(left),
                Box::new(right),
            );
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, LogicError> {
        if self.eat_op(&["-"]).is_some() {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat_op(&["+"]).is_some() {
            return self.unary();
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, LogicError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(LogicError("the logic ends too early".into()));
        };
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::LParen => {
                let e = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(e)
            }
            Tok::Bracket(b) => {
                if let Some(Tok::Bracket(next)) = self.peek().cloned() {
                    // `[event][field]`, or `[field][instance]`-style
                    // suffixes REDCap has, which are not offered here.
                    if let Some(&id) = self.schema.events.get(&b) {
                        self.pos += 1;
                        if !self.events.contains(&id) {
                            self.events.push(id);
                        }
                        let field = self.field(&next, Some(id))?;
                        return Ok(self.instance_suffix(field));
                    }
                }
                let field = self.field(&b, None)?;
                Ok(self.instance_suffix(field))
            }
            Tok::Word(w) => {
                match w.to_lowercase().as_str() {
                    "true" => return Ok(Expr::Num(1.0)),
                    "false" => return Ok(Expr::Num(0.0)),
                    _ => {}
                }
                let func = match w.to_lowercase().as_str() {
                    "datediff" => Func::Datediff,
                    "sum" => Func::Sum,
                    "if" => Func::If,
                    "round" => Func::Round,
                    "abs" => Func::Abs,
                    "min" => Func::Min,
                    "max" => Func::Max,
                    "mean" => Func::Mean,
                    "isblankormissingcode" => Func::IsBlank,
                    _ => return Err(LogicError(format!("'{w}' is not a known function"))),
                };
                self.expect(Tok::LParen)?;
                let mut args = Vec::new();
                if self.peek() != Some(&Tok::RParen) {
                    loop {
                        args.push(self.or()?);
                        if self.peek() == Some(&Tok::Comma) {
                            self.pos += 1;
                            continue;
                        }
                        break;
                    }
                }
                self.expect(Tok::RParen)?;
                let ok = match func {
                    Func::Datediff => (3..=5).contains(&args.len()),
                    Func::If => args.len() == 3,
                    Func::Round => (1..=2).contains(&args.len()),
                    Func::Abs | Func::IsBlank => args.len() == 1,
                    _ => !args.is_empty(),
                };
                if !ok {
                    return Err(LogicError(format!(
                        "{w}() was given {} arguments",
                        args.len()
                    )));
                }
                Ok(Expr::Call(func, args))
            }
            t => Err(LogicError(format!("unexpected {}", describe(&t)))),
        }
    }

    /// A field followed by `[n]` (a whole number from 1) or
    /// `[current-instance]`: that instance of it.
    fn instance_suffix(&mut self, e: Expr) -> Expr {
        let Expr::Field { col, event, .. } = e else {
            return e;
        };
        let instance = match self.peek() {
            Some(Tok::Bracket(n)) if n.eq_ignore_ascii_case("current-instance") => {
                self.pos += 1;
                None
            }
            Some(Tok::Bracket(n)) => match n.parse::<i64>() {
                Ok(n) if n >= 1 && !n.to_string().is_empty() => {
                    self.pos += 1;
                    Some(n)
                }
                _ => None,
            },
            _ => None,
        };
        Expr::Field {
            col,
            event,
            instance,
        }
    }

    /// `[name]` or `[name(code)]` (after any `[event]`), or a smart variable.
    fn field(&mut self, b: &str, event: Option<i64>) -> Result<Expr, LogicError> {
        // REDCap's LogicTester rewrites `:value]` as `]`.
        let b = b.strip_suffix(":value").unwrap_or(b);
        let smart = match b.to_lowercase().as_str() {
            "record-name" => Some(Smart::RecordName),
            "event-name" => Some(Smart::EventName),
            "event-label" => Some(Smart::EventLabel),
            "arm-number" => Some(Smart::ArmNumber),
            "record-dag-name" => Some(Smart::RecordDagName),
            "current-instance" => Some(Smart::CurrentInstance),
            "user-name" => Some(Smart::UserName),
            _ => None,
        };
        if let Some(s) = smart {
            if event.is_some() {
                return Err(LogicError(format!("[{b}] cannot follow an event")));
            }
            return Ok(Expr::Smart(s));
        }
        let (name, code) = match b.split_once('(') {
            Some((n, rest)) => {
                let code = rest
                    .strip_suffix(')')
                    .ok_or_else(|| LogicError(format!("'[{b}]' is not a field")))?;
                (n.trim(), Some(code.trim()))
            }
            None => (b, None),
        };
        let Some((form, checkbox, codes)) = self.schema.fields.get(name) else {
            if self.schema.events.contains_key(name) {
                return Err(LogicError(format!(
                    "the event '[{name}]' must be followed by a field"
                )));
            }
            return Err(LogicError(format!(
                "'{name}' is not a field of the project"
            )));
        };
        let column = match (code, *checkbox) {
            (Some(code), true) => {
                if !codes.iter().any(|c| c.eq_ignore_ascii_case(code)) {
                    return Err(LogicError(format!(
                        "'{code}' is not a choice of the checkbox field '{name}'"
                    )));
                }
                format!("{name}___{}", code.to_lowercase())
            }
            (None, true) => {
                return Err(LogicError(format!(
                    "the checkbox field '{name}' needs a choice, as in [{name}(1)]"
                )));
            }
            (Some(_), false) => {
                return Err(LogicError(format!("'{name}' is not a checkbox field")));
            }
            (None, false) => name.to_owned(),
        };
        let col = match self.columns.iter().position(|(c, _)| *c == column) {
            Some(i) => i,
            None => {
                self.columns.push((column, form.clone()));
                self.columns.len() - 1
            }
        };
        Ok(Expr::Field {
            col,
            event,
            instance: None,
        })
    }
}

// ----- evaluation -----

impl Logic {
    /// Whether `row` passes.
    pub fn matches(&self, row: &dyn Row) -> bool {
        self.eval(&self.expr, row).truthy()
    }

    fn eval(&self, e: &Expr, row: &dyn Row) -> V {
        match e {
            Expr::Num(n) => V::Num(*n),
            Expr::Str(s) => V::Text(s.clone()),
            Expr::Field {
                col,
                event,
                instance: None,
            } => V::Text(row.value(*col, *event).to_owned()),
            Expr::Field {
                col,
                event,
                instance: Some(n),
            } => V::Text(row.value_at(*col, *event, *n).to_owned()),
            Expr::Smart(s) => V::Text(row.smart(*s)),
            Expr::Not(a) => V::bool(!self.eval(a, row).truthy()),
            Expr::Neg(a) => match self.eval(a, row).num() {
                Some(n) => V::Num(-n),
                None => V::Text(String::new()),
            },
            Expr::And(a, b) => V::bool(self.eval(a, row).truthy() && self.eval(b, row).truthy()),
            Expr::Or(a, b) => V::bool(self.eval(a, row).truthy() || self.eval(b, row).truthy()),
            Expr::Cmp(op, a, b) => V::bool(compare(*op, &self.eval(a, row), &self.eval(b, row))),
            Expr::Arith(op, a, b) => {
                let (a, b) = (self.eval(a, row).num(), self.eval(b, row).num());
                match (a, b) {
                    (Some(a), Some(b)) => {
                        let r = match op {
                            '+' => a + b,
                            '-' => a - b,
                            '*' => a * b,
                            _ => a / b,
                        };
                        if r.is_finite() {
                            V::Num(r)
                        } else {
                            V::Text(String::new())
                        }
                    }
                    // A blank operand makes the result blank (REDCap's
                    // calculations give no value).
                    _ => V::Text(String::new()),
                }
            }
            Expr::Call(f, args) => self.call(*f, args, row),
        }
    }

    fn call(&self, f: Func, args: &[Expr], row: &dyn Row) -> V {
        let vals: Vec<V> = args.iter().map(|a| self.eval(a, row)).collect();
        let nums = || vals.iter().filter_map(V::num).collect::<Vec<f64>>();
        let blank = || V::Text(String::new());
        match f {
            Func::Sum => V::Num(nums().iter().sum()),
            Func::Min => nums()
                .into_iter()
                .reduce(f64::min)
                .map_or_else(blank, V::Num),
            Func::Max => nums()
                .into_iter()
                .reduce(f64::max)
                .map_or_else(blank, V::Num),
            Func::Mean => {
                let n = nums();
                if n.is_empty() {
                    blank()
                } else {
                    V::Num(n.iter().sum::<f64>() / n.len() as f64)
                }
            }
            Func::Abs => vals[0].num().map_or_else(blank, |n| V::Num(n.abs())),
            Func::Round => {
                let places = vals.get(1).and_then(V::num).unwrap_or(0.0) as i32;
                let scale = 10f64.powi(places);
                vals[0]
                    .num()
                    .map_or_else(blank, |n| V::Num((n * scale).round() / scale))
            }
            Func::If => {
                if vals[0].truthy() {
                    vals[1].clone()
                } else {
                    vals[2].clone()
                }
            }
            Func::IsBlank => V::bool(vals[0].is_blank()),
            Func::Datediff => self.datediff(&vals),
        }
    }

    /// `datediff(a, b, unit[, format][, signed])`: `b - a` in the unit
    /// (`y` = 365.2425 days, `M` = 30.44 days, `d`, `h`, `m`, `s`),
    /// absolute unless `signed` is true; blank when a date is blank.
    /// Values are stored as `YYYY-MM-DD[ HH:MM[:SS]]`, so the format
    /// argument changes nothing; `today` and `now` are the request's.
    fn datediff(&self, vals: &[V]) -> V {
        let unit = vals[2].text();
        let signed = match vals.len() {
            5 => vals[4].truthy(),
            // The fourth argument is either the format or `signed`.
            4 => match &vals[3] {
                V::Num(n) => *n != 0.0,
                V::Text(t) => t.eq_ignore_ascii_case("true"),
            },
            _ => false,
        };
        let (Some(a), Some(b)) = (self.seconds(&vals[0]), self.seconds(&vals[1])) else {
            return V::Text(String::new());
        };
        let per = match unit.as_str() {
            "y" => 365.2425 * 86400.0,
            "M" => 30.44 * 86400.0,
            "d" => 86400.0,
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            _ => return V::Text(String::new()),
        };
        let d = (b - a) / per;
        V::Num(if signed { d } else { d.abs() })
    }

    /// Seconds since 1970 of a date or datetime value.
    fn seconds(&self, v: &V) -> Option<f64> {
        let t = v.text();
        let t = t.trim();
        let t = match t.to_lowercase().as_str() {
            "today" => &self.now[..10],
            "now" => self.now.as_str(),
            _ => t,
        };
        let (date, time) = t.split_once(' ').unwrap_or((t, ""));
        let d: jiff::civil::Date = date.parse().ok()?;
        let mut secs = 0i64;
        if !time.is_empty() {
            let mut parts = time.split(':').map(|p| p.parse::<i64>());
            let h = parts.next()?.ok()?;
            let m = parts.next().unwrap_or(Ok(0)).ok()?;
            let s = parts.next().unwrap_or(Ok(0)).ok()?;
            secs = h * 3600 + m * 60 + s;
        }
        let days = d.since(jiff::civil::date(1970, 1, 1)).ok()?.get_days();
        Some(days as f64 * 86400.0 + secs as f64)
    }
}

/// REDCap's comparison: numbers as numbers, else text; blank equals only
/// blank and is neither less nor greater than anything.
fn compare(op: Cmp, a: &V, b: &V) -> bool {
    let (ablank, bblank) = (a.is_blank(), b.is_blank());
    if ablank || bblank {
        let eq = ablank && bblank;
        return match op {
            Cmp::Eq => eq,
            Cmp::Ne => !eq,
            _ => false,
        };
    }
    let ord = match (a.num(), b.num()) {
        (Some(x), Some(y)) => x.partial_cmp(&y),
        _ => Some(a.text().cmp(&b.text())),
    };
    let Some(ord) = ord else { return false };
    use std::cmp::Ordering::*;
    match op {
        Cmp::Eq => ord == Equal,
        Cmp::Ne => ord != Equal,
        Cmp::Lt => ord == Less,
        Cmp::Le => ord != Greater,
        Cmp::Gt => ord == Greater,
        Cmp::Ge => ord != Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        let mut fields = HashMap::new();
        for f in ["record_id", "age", "name", "dob", "visit", "demo_complete"] {
            fields.insert(f.to_owned(), ("demo".to_owned(), false, vec![]));
        }
        fields.insert(
            "colors".to_owned(),
            (
                "demo".to_owned(),
                true,
                vec!["1".to_owned(), "2".to_owned()],
            ),
        );
        let mut events = HashMap::new();
        events.insert("baseline_arm_1".to_owned(), 10);
        events.insert("week_1_arm_1".to_owned(), 11);
        Schema {
            fields,
            events,
            now: "2026-12-07 12:00:00".into(),
        }
    }

    /// A row: values by column name, per event (`None` key: the row's own).
    struct TestRow {
        logic: Logic,
        own: HashMap<&'static str, &'static str>,
        by_event: HashMap<(i64, &'static str), &'static str>,
        by_instance: HashMap<(Option<i64>, &'static str, i64), &'static str>,
    }

    impl Row for TestRow {
        fn value(&self, col: usize, event: Option<i64>) -> &str {
            let name = self.logic.columns[col].0.as_str();
            match event {
                None => self.own.get(name).copied().unwrap_or(""),
                Some(e) => self
                    .by_event
                    .iter()
                    .find(|((ev, n), _)| *ev == e && *n == name)
                    .map(|(_, v)| *v)
                    .unwrap_or(""),
            }
        }
        fn value_at(&self, col: usize, event: Option<i64>, instance: i64) -> &str {
            let name = self.logic.columns[col].0.as_str();
            self.by_instance
                .iter()
                .find(|((ev, n, i), _)| *ev == event && *n == name && *i == instance)
                .map(|(_, v)| *v)
                .unwrap_or("")
        }
        fn smart(&self, s: Smart) -> String {
            match s {
                Smart::RecordName => "7".into(),
                Smart::EventName => "week_1_arm_1".into(),
                Smart::RecordDagName => "site_a".into(),
                Smart::CurrentInstance => "2".into(),
                Smart::UserName => "alice".into(),
                Smart::ArmNumber => "1".into(),
                Smart::EventLabel => "Week 1".into(),
            }
        }
    }

    fn eval(src: &str, own: &[(&'static str, &'static str)]) -> bool {
        let logic = parse(src, &schema()).unwrap_or_else(|e| panic!("{src}: {e:?}"));
        let row = TestRow {
            logic,
            own: own.iter().copied().collect(),
            by_event: [((10, "age"), "40"), ((11, "age"), "41")]
                .into_iter()
                .collect(),
            by_instance: [
                ((None, "visit", 2), "2026-02-01"),
                ((Some(11), "visit", 3), "2026-03-01"),
            ]
            .into_iter()
            .collect(),
        };
        row.logic.matches(&row)
    }

    #[test]
    fn instances_and_value_suffix() {
        // `[field][n]`: that instance of the row's event; after an event,
        // of that event; `[current-instance]` is the row's own.
        assert!(eval("[visit][2] = '2026-02-01'", &[]));
        assert!(eval("[visit][3] = ''", &[]));
        assert!(eval("[week_1_arm_1][visit][3] = '2026-03-01'", &[]));
        assert!(eval(
            "[visit][current-instance] = '2026-01-01'",
            &[("visit", "2026-01-01")]
        ));
        // `[field:value]` is `[field]` (REDCap's LogicTester).
        assert!(eval("[age:value] = 5", &[("age", "5")]));
        // A bracket after a field that is no instance is still an error.
        assert!(
            err("[age][x] = 1").contains("'[x]'"),
            "{}",
            err("[age][x] = 1")
        );
        assert!(
            err("[age][0] = 1").contains("'[0]'"),
            "{}",
            err("[age][0] = 1")
        );
    }

    fn err(src: &str) -> String {
        parse(src, &schema()).expect_err(src).0
    }

    #[test]
    fn comparisons_numbers_and_text() {
        assert!(eval("[age] > 30", &[("age", "31")]));
        assert!(!eval("[age] > 30", &[("age", "4")]));
        // Numbers compare as numbers, not as text ("4" > "30" as text).
        assert!(eval("[age] < 30", &[("age", "4")]));
        assert!(eval("[age] = '4.0'", &[("age", "4")]));
        assert!(eval("[age] >= 4 AND [age] <= 4", &[("age", "4")]));
        assert!(eval("[name] = 'bob'", &[("name", "bob")]));
        assert!(!eval("[name] = 'Bob'", &[("name", "bob")]));
        assert!(eval("[name] <> \"bob\"", &[("name", "ann")]));
        assert!(eval("[name] != 'bob'", &[("name", "ann")]));
        assert!(eval("[name] == 'ann'", &[("name", "ann")]));
        // Text against a number compares as text.
        assert!(eval("[name] > 5", &[("name", "abc")]));
    }

    #[test]
    fn blanks() {
        assert!(eval("[age] = ''", &[]));
        assert!(eval("[age] = \"\"", &[("age", "")]));
        assert!(!eval("[age] <> ''", &[]));
        assert!(eval("[age] <> ''", &[("age", "3")]));
        // A blank is neither less nor greater than a number.
        assert!(!eval("[age] < 5", &[]));
        assert!(!eval("[age] >= 0", &[]));
        assert!(!eval("[age] = 0", &[]));
        assert!(eval("isblankormissingcode([age])", &[]));
    }

    #[test]
    fn boolean_operators_precedence_and_case() {
        let row = [("age", "20"), ("name", "x")];
        assert!(eval("[age] = 1 or [age] = 20 and [name] = 'x'", &row));
        assert!(!eval("([age] = 1 or [age] = 20) and [name] = 'y'", &row));
        assert!(eval("[age] = 1 || [name] = 'x'", &row));
        assert!(!eval("[age] = 20 && [name] = 'y'", &row));
        assert!(eval("NOT [age] = 1", &row));
        assert!(eval("not ([age] = 1) AnD [name] = 'x'", &row));
        assert!(eval("!([age] = 1)", &row));
    }

    #[test]
    fn checkboxes_events_and_smart_variables() {
        assert!(eval("[colors(2)] = '1'", &[("colors___2", "1")]));
        assert!(eval(
            "[colors(1)] = 1 or [colors(2)] = 1",
            &[("colors___2", "1")]
        ));
        assert!(eval("[baseline_arm_1][age] = 40", &[("age", "41")]));
        assert!(eval("[week_1_arm_1][age] > [baseline_arm_1][age]", &[]));
        assert!(eval("[record-name] = '7'", &[]));
        assert!(eval("[event-name] = 'week_1_arm_1'", &[]));
        assert!(eval("[record-dag-name] = 'site_a'", &[]));
        assert!(eval("[current-instance] > 1", &[]));
        assert!(eval("[user-name] = 'alice'", &[]));
        let logic = parse("[baseline_arm_1][age] = 1 and [colors(1)] = 1", &schema()).unwrap();
        assert_eq!(logic.events, vec![10]);
        assert_eq!(
            logic.columns,
            vec![
                ("age".to_owned(), "demo".to_owned()),
                ("colors___1".to_owned(), "demo".to_owned())
            ]
        );
    }

    #[test]
    fn functions() {
        let row = [("dob", "2000-01-01"), ("visit", "2000-01-31")];
        assert!(eval("datediff([dob], [visit], 'd') = 30", &row));
        assert!(eval("datediff([visit], [dob], \"d\") = 30", &row));
        assert!(eval(
            "datediff([visit], [dob], 'd', 'ymd', true) = -30",
            &row
        ));
        assert!(eval("datediff([visit], [dob], 'd', true) = -30", &row));
        assert!(eval("datediff([dob], [visit], 'h') = 720", &row));
        assert!(eval("datediff([dob], 'today', 'y') > 26", &row));
        assert!(eval("datediff([dob], '2000-01-01 06:30', 'm') = 390", &row));
        // A blank date gives no value: the comparison is false.
        assert!(!eval("datediff([age], [visit], 'd') > 0", &row));
        assert!(eval("sum([age], [name], 2) = 5", &[("age", "3")]));
        assert!(eval("sum([age], 1) + 1 = 5", &[("age", "3")]));
        assert!(eval("[age] * 2 - 1 = 5", &[("age", "3")]));
        assert!(eval(
            "if([age] > 2, 'big', 'small') = 'big'",
            &[("age", "3")]
        ));
        assert!(eval("round(2.46, 1) = 2.5 and abs(-2) = 2", &[]));
        assert!(eval(
            "max(1, [age], 2) = 3 and min(4, [age]) = 3",
            &[("age", "3")]
        ));
        assert!(eval("mean(2, 4) = 3", &[]));
    }

    #[test]
    fn bad_logic_is_refused_with_a_reason() {
        assert!(err("[age] >").contains("ends too early"));
        assert!(err("[age] = 1)").contains("unexpected ')'"));
        assert!(err("([age] = 1").contains("expected ')'"));
        assert!(err("[nope] = 1").contains("'nope' is not a field"));
        assert!(err("[colors] = 1").contains("needs a choice"));
        assert!(err("[colors(9)] = 1").contains("'9' is not a choice"));
        assert!(err("[age(1)] = 1").contains("not a checkbox"));
        assert!(err("[age] = 'open").contains("never closed"));
        assert!(err("[age = 1").contains("never closed"));
        assert!(err("foo([age])").contains("not a known function"));
        assert!(err("datediff([dob])").contains("arguments"));
        assert!(err("[age] ; 1").contains("unexpected ';'"));
        assert!(err("  ").contains("empty"));
        assert!(err("[baseline_arm_1] = 1").contains("must be followed by a field"));
    }
}
