//! Text tables for people: each column as wide as its widest cell up to a
//! cap, longer cells cut with an ellipsis (paths keep their end, where the
//! program's name is), and durations as people read them.

/// How a column is cut when a cell is wider than its cap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Keep the start (`api.example.c…`).
    End,
    /// Keep the end (`…/bin/python3`): for paths.
    Start,
}

#[derive(Clone, Copy)]
pub struct Column {
    pub title: &'static str,
    /// The widest a cell may be; `usize::MAX` for the last column.
    pub cap: usize,
    pub right: bool,
    pub cut: Cut,
}

impl Column {
    pub const fn left(title: &'static str, cap: usize) -> Column {
        Column {
            title,
            cap,
            right: false,
            cut: Cut::End,
        }
    }

    pub const fn right(title: &'static str, cap: usize) -> Column {
        Column {
            title,
            cap,
            right: true,
            cut: Cut::End,
        }
    }

    pub const fn path(title: &'static str, cap: usize) -> Column {
        Column {
            title,
            cap,
            right: false,
            cut: Cut::Start,
        }
    }
}

/// `s` cut to `width` characters with an ellipsis where it was cut.
pub fn fit(s: &str, width: usize, cut: Cut) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    match cut {
        Cut::End => s.chars().take(width - 1).chain(['…']).collect(),
        Cut::Start => ['…']
            .into_iter()
            .chain(s.chars().skip(n - (width - 1)))
            .collect(),
    }
}

/// The rows as lines, with a header line when `header`: widths from the
/// content (and the titles), each capped. With `fixed`, every column is
/// exactly its cap (for rows printed one at a time, as `--follow` does).
pub fn render(columns: &[Column], rows: &[Vec<String>], header: bool, fixed: bool) -> Vec<String> {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if fixed && c.cap != usize::MAX {
                return c.cap;
            }
            let content = rows
                .iter()
                .map(|r| r.get(i).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0);
            content.max(c.title.chars().count()).min(c.cap)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, cell)) in columns.iter().zip(cells).enumerate() {
            let last = i + 1 == columns.len();
            let text = fit(cell, widths[i], c.cut);
            if i > 0 {
                out.push(' ');
            }
            if c.right {
                out.push_str(&format!("{text:>w$}", w = widths[i]));
            } else if last {
                out.push_str(&text);
            } else {
                out.push_str(&format!("{text:<w$}", w = widths[i]));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = Vec::new();
    if header {
        out.push(line(columns.iter().map(|c| c.title).collect()));
    }
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A duration as people say it: `4 s`, `12 min`, `3 h 12 min`, `2 d 5 h`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 if secs % 3600 >= 60 => {
            format!("{} h {} min", secs / 3600, secs % 3600 / 60)
        }
        3600..86400 => format!("{} h", secs / 3600),
        _ if secs % 86400 >= 3600 => format!("{} d {} h", secs / 86400, secs % 86400 / 3600),
        _ => format!("{} d", secs / 86400),
    }
}

/// `addr:port`, with an IPv6 address in brackets (`[2001:db8::1]:443`).
pub fn endpoint(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_cut_with_an_ellipsis_and_paths_keep_their_end() {
        assert_eq!(
            fit("/usr/local/bin/python3.12", 12, Cut::Start),
            "…/python3.12"
        );
        assert_eq!(fit("api.example.com", 8, Cut::End), "api.exa…");
        assert_eq!(fit("short", 8, Cut::End), "short");
    }

    #[test]
    fn columns_follow_the_content_up_to_their_cap() {
        let cols = [
            Column::right("N", 5),
            Column::path("EXE", 12),
            Column::left("REST", usize::MAX),
        ];
        let rows = vec![
            vec!["1".into(), "/bin/sh".into(), "a".into()],
            vec![
                "22".into(),
                "/a/very/long/path/to/node".into(),
                "b c".into(),
            ],
        ];
        let lines = render(&cols, &rows, true, false);
        assert_eq!(lines[0], " N EXE          REST");
        assert_eq!(lines[1], " 1 /bin/sh      a");
        assert_eq!(lines[2], "22 …ath/to/node b c");
        let fixed = render(&cols, &rows[..1], false, true);
        assert_eq!(fixed[0], "    1 /bin/sh      a");
    }

    #[test]
    fn durations_and_endpoints_read_as_people_write_them() {
        assert_eq!(duration(4), "4 s");
        assert_eq!(duration(125), "2 min");
        assert_eq!(duration(3 * 3600 + 12 * 60 + 5), "3 h 12 min");
        assert_eq!(duration(7200), "2 h");
        assert_eq!(duration(2 * 86400 + 5 * 3600), "2 d 5 h");
        assert_eq!(endpoint("2001:db8::1", 443), "[2001:db8::1]:443");
        assert_eq!(endpoint("192.0.2.1", 53), "192.0.2.1:53");
    }
}
