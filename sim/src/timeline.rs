//! The SVG timeline of one run: clients by true time, with their belief
//! intervals (overlaps in red), protected actions, pauses and partitions,
//! and the nodes with their down times, amnesia and clock jumps.

use std::fmt::Write as _;

use crate::checker::{Overlap, Segment, Unbacked};

const LEFT: f64 = 130.0;
const WIDTH: f64 = 1100.0;
const ROW: f64 = 34.0;
const TOP: f64 = 50.0;

#[derive(Debug, Default)]
pub(crate) struct Timeline {
    nodes: usize,
    clients: usize,
    resources: usize,
    pub(crate) segments: Vec<Segment>,
    pub(crate) actions: Vec<(usize, usize, u64)>,
    /// (node, from, until, what)
    pub(crate) downs: Vec<(usize, u64, u64, &'static str)>,
    /// (node, at, what)
    pub(crate) marks: Vec<(usize, u64, &'static str)>,
    /// (client, node, from, until)
    pub(crate) partitions: Vec<(usize, usize, u64, u64)>,
    /// (client, from, until, unsafe)
    pub(crate) pauses: Vec<(usize, u64, u64, bool)>,
    pub(crate) overlap: Option<Overlap>,
    /// A belief without a quorum of blocking nodes behind it.
    pub(crate) unbacked: Option<Unbacked>,
    /// Writes the fenced store refused: (client, resource, at).
    pub(crate) rejected: Vec<(usize, usize, u64)>,
    /// The fence checker's first violation, by kind.
    pub(crate) fence: Option<String>,
    pub(crate) end: u64,
    pub(crate) ttl: u64,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Timeline {
    pub(crate) fn new(nodes: usize, clients: usize, resources: usize) -> Timeline {
        Timeline {
            nodes,
            clients,
            resources,
            ..Timeline::default()
        }
    }

    fn x(&self, t: u64) -> f64 {
        let end = self.end.max(1) as f64;
        LEFT + (t.min(self.end) as f64 / end) * WIDTH
    }

    pub(crate) fn render(&self, seed: u64) -> String {
        let rows = self.clients + self.nodes;
        let height = TOP + rows as f64 * ROW + 60.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="monospace" font-size="12">"#,
            LEFT + WIDTH + 20.0
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let title = match &self.overlap {
            Some(o) => format!(
                "seed {seed}: VIOLATION, client {} and client {} overlap on {:?} at {:.6}s",
                o.client,
                o.other,
                resource_name(o.resource),
                o.at as f64 / 1e6
            ),
            None => match &self.unbacked {
                Some(u) => format!(
                    "seed {seed}: VIOLATION, client {}'s belief in {:?} not backed by a quorum of nodes at {:.6}s",
                    u.client,
                    resource_name(u.resource),
                    u.at as f64 / 1e6
                ),
                None => format!("seed {seed}: no violation"),
            },
        };
        let title = match &self.fence {
            Some(kind) => format!("{title}; FENCE VIOLATION ({kind})"),
            None if self.rejected.is_empty() => title,
            None => format!(
                "{title}; the fenced store refused {} stale write(s)",
                self.rejected.len()
            ),
        };
        let _ = writeln!(
            s,
            r#"<text x="10" y="20" font-size="14">{}</text>"#,
            esc(&title)
        );
        let _ = writeln!(
            s,
            r##"<text x="10" y="38" fill="#555">true time; bars = belief intervals (blue: "r", green: "r2", purple: "r3", red: overlap), ticks = protected actions (red x: refused by the fenced store), grey = pause / node down, orange = partition</text>"##
        );
        // Time axis, one tick per TTL.
        let axis_y = TOP + rows as f64 * ROW + 10.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#000"/>"##,
            LEFT + WIDTH
        );
        let step = self.ttl.max(1);
        let mut t = 0;
        while t <= self.end && self.end / step < 200 {
            let x = self.x(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{:.1}s</text>"##,
                axis_y + 4.0,
                axis_y + 18.0,
                t as f64 / 1e6
            );
            t += step;
        }
        for c in 0..self.clients {
            let y = TOP + c as f64 * ROW;
            let _ = writeln!(s, r#"<text x="10" y="{}">client {c}</text>"#, y + 18.0);
            for &(pc, from, until, bad) in &self.pauses {
                if pc == c {
                    let fill = if bad { "#999" } else { "#ccc" };
                    self.rect(&mut s, from, until, y + 2.0, ROW - 6.0, fill, "pause");
                }
            }
            for seg in self.segments.iter().filter(|g| g.client == c) {
                let fill = match seg.resource {
                    0 => "#4a7bd0",
                    1 => "#3a9a55",
                    _ => "#8a4ac0",
                };
                // Several resources of one client: thinner bars, one row each.
                let (yy, h) = if self.resources > 2 {
                    (y + 4.0 + 6.0 * seg.resource as f64, 6.0)
                } else {
                    (y + 6.0, 14.0)
                };
                self.rect(&mut s, seg.start, seg.end, yy, h, fill, "belief");
                // Red where another client's belief overlaps this one.
                for other in self
                    .segments
                    .iter()
                    .filter(|g| g.client != c && g.resource == seg.resource)
                {
                    let (a, b) = (seg.start.max(other.start), seg.end.min(other.end));
                    if a < b {
                        self.rect(&mut s, a, b, yy, h, "#e02020", "overlap");
                    }
                }
            }
            if let Some(u) = self.unbacked.as_ref().filter(|u| u.client == c) {
                // Red from the unbacked instant to the belief's end.
                let end = u.segment.end.max(u.at + 1);
                self.rect(
                    &mut s,
                    u.at,
                    end,
                    y + 6.0,
                    14.0,
                    "#e02020",
                    "no quorum behind",
                );
            }
            for &(rc, _, at) in &self.rejected {
                if rc == c {
                    let x = self.x(at);
                    let _ = writeln!(
                        s,
                        r##"<path d="M{:.1} {:.1} l8 8 m0 -8 l-8 8" stroke="#e02020" stroke-width="2"><title>write refused by the fenced store at {:.6}s</title></path>"##,
                        x - 4.0,
                        y + 9.0,
                        at as f64 / 1e6
                    );
                }
            }
            for &(ac, r, at) in &self.actions {
                if ac == c {
                    let x = self.x(at);
                    let color = match r {
                        0 => "#000",
                        1 => "#063",
                        _ => "#406",
                    };
                    let _ = writeln!(
                        s,
                        r#"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="{color}" stroke-width="1.5"/>"#,
                        y + 2.0,
                        y + 24.0
                    );
                }
            }
            for &(pc, n, from, until) in &self.partitions {
                if pc == c {
                    let yy = y + 24.0 + (n as f64) * 1.2;
                    self.rect(
                        &mut s,
                        from,
                        until,
                        yy,
                        2.0,
                        "#f08a00",
                        &format!("partition from node {n}"),
                    );
                }
            }
        }
        for n in 0..self.nodes {
            let y = TOP + (self.clients + n) as f64 * ROW;
            let _ = writeln!(s, r#"<text x="10" y="{}">node {n}</text>"#, y + 18.0);
            self.rect(&mut s, 0, self.end, y + 8.0, 10.0, "#cfe8cf", "up");
            for &(dn, from, until, what) in &self.downs {
                if dn == n {
                    self.rect(&mut s, from, until, y + 8.0, 10.0, "#888", what);
                }
            }
            for &(mn, at, what) in &self.marks {
                if mn == n {
                    let x = self.x(at);
                    let _ = writeln!(
                        s,
                        r#"<path d="M{x:.1} {} l5 7 l-5 7 l-5 -7 z" fill="{}"><title>{}</title></path>"#,
                        y + 6.0,
                        match what {
                            "amnesia" => "#e02020",
                            "register amnesia" => "#f08a00",
                            _ => "#a020e0",
                        },
                        esc(what)
                    );
                }
            }
        }
        let _ = writeln!(s, "</svg>");
        s
    }

    #[allow(clippy::too_many_arguments)]
    fn rect(&self, s: &mut String, from: u64, until: u64, y: f64, h: f64, fill: &str, title: &str) {
        let (x0, x1) = (self.x(from), self.x(until));
        let w = (x1 - x0).max(1.0);
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}"><title>{} {:.6}s..{:.6}s</title></rect>"#,
            esc(title),
            from as f64 / 1e6,
            until as f64 / 1e6
        );
    }
}

/// The name of resource `r` as the workload uses it.
fn resource_name(r: usize) -> String {
    crate::world::RESOURCES
        .get(r)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_else(|| format!("#{r}"))
}
