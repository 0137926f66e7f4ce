//! The dashboard page: one HTML document with inline CSS and inline SVG, no script, readable on a phone.

use std::fmt::Write;

use crate::charts::{Dashboard, DataTable};
use crate::svg::{self, esc};

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#111827;background:#f9fafb}\
header{background:#111827;color:#fff;padding:12px 16px}header h1{font-size:1.2rem;margin:0}\
main{max-width:1000px;margin:0 auto;padding:12px}section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px;margin:12px 0}\
h2{font-size:1rem;margin:0 0 8px}.data{font-size:.8rem}.data a{margin-right:8px}\
form{display:flex;flex-wrap:wrap;gap:8px;align-items:end}label{display:flex;flex-direction:column;font-size:.8rem}\
input,select,button{font-size:1rem;padding:4px}svg.chart{width:100%;height:auto}\
.multiples{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:8px}svg.small{width:100%;height:auto;border:1px solid #f3f4f6}\
.grid{stroke:#e5e7eb}.tick{font-size:10px;fill:#6b7280}.label{font-size:12px;fill:#111827}.loss{font-size:11px;fill:#b91c1c}.muted{fill:#9ca3af;font-size:14px}\
.cpa{fill:none;stroke:#2563eb;stroke-width:2}.target{fill:none;stroke:#16a34a;stroke-width:1.5;stroke-dasharray:5 4}.up{fill:#dc2626}.down{fill:#16a34a}\
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.8rem;width:100%}th,td{border-bottom:1px solid #e5e7eb;padding:4px 6px;text-align:left;white-space:nowrap}\
.note{font-size:.75rem;color:#6b7280}";

fn data_links(s: &mut String, t: &DataTable, query: &str) {
    let _ = write!(
        s,
        "<p class=\"data\">Data: <a href=\"/reports/{0}.json?{1}\">JSON</a><a href=\"/reports/{0}.csv?{1}\">CSV</a></p>",
        t.name,
        esc(query)
    );
}

fn html_table(s: &mut String, t: &DataTable) {
    if t.rows.is_empty() {
        s.push_str("<p class=\"note\">None in this range.</p>");
        return;
    }
    s.push_str("<div class=\"scroll\"><table><thead><tr>");
    for c in &t.columns {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(&c.text()));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
}

/// The whole page.
pub fn render(d: &Dashboard, facts_note: &str) -> String {
    let f = &d.filter;
    let query = f.query_string();
    let mut s = String::with_capacity(64 * 1024);
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><link rel=\"icon\" href=\"data:,\"><title>Fluxo reports</title><style>{STYLE}</style></head><body><header><h1>Fluxo reports</h1></header><main>"
    );
    let _ = write!(
        s,
        "<section><form method=\"get\" action=\"/reports\"><label>From<input type=\"date\" name=\"from\" value=\"{}\"></label><label>To<input type=\"date\" name=\"to\" value=\"{}\"></label><label>Source<select name=\"source\"><option value=\"\">all sources</option>",
        f.from, f.to
    );
    for source in &d.sources {
        let selected = if f.source.as_deref() == Some(source.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            s,
            "<option value=\"{0}\"{selected}>{0}</option>",
            esc(source)
        );
    }
    let _ = write!(
        s,
        "</select></label><button type=\"submit\">Show</button></form><p class=\"note\">{}</p></section>",
        esc(facts_note)
    );
    for t in &d.tables {
        let _ = write!(s, "<section id=\"{}\"><h2>{}</h2>", t.name, esc(t.title));
        match t.name {
            "leads-by-source" => s.push_str(&svg::stacked_days(t)),
            "funnel" => s.push_str(&svg::funnel(t)),
            "cpa" => s.push_str(&svg::cpa_multiples(t)),
            "platforms" => s.push_str(&svg::platforms(t)),
            _ => html_table(&mut s, t),
        }
        data_links(&mut s, t, &query);
        s.push_str("</section>");
    }
    s.push_str("</main></body></html>");
    s
}
