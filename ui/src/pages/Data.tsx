import { useState } from "react";
import { api, fmt } from "../api/client";
import { usePoll } from "../api/ws";

export function Data() {
  const [sessions] = usePoll(async () => (await api.GET("/rl/sessions", { params: { query: {} } })).data, 5000);
  const [sel, setSel] = useState<number | null>(null);
  const active = sel ?? sessions?.[0]?.id ?? null;
  const [detail] = usePoll(
    async () => (active === null ? undefined : (await api.GET("/rl/sessions/{session_id}", { params: { path: { session_id: active } } })).data),
    5000,
    [active],
  );
  return (
    <section>
      <h2>Recording sessions</h2>
      <table className="grid" data-testid="sessions-table">
        <thead><tr><th>id</th><th>mode</th><th>source</th><th>started</th><th>duration</th><th>markets</th><th>messages</th><th>deltas</th><th>trades</th><th>gaps</th><th>decode err</th><th>reconnects</th></tr></thead>
        <tbody>
          {(sessions ?? []).map((s) => (
            <tr key={s.id} className={`link ${s.id === active ? "sel" : ""}`} onClick={() => setSel(s.id)} data-testid="session-row">
              <td>#{s.id} {s.live && <span className="pill ok">live</span>}</td><td>{s.mode}</td><td className="mono small">{s.source}</td>
              <td>{new Date(s.started_at).toLocaleString()}</td><td className="num">{fmt(s.duration_s / 60, 1)} min</td>
              <td className="num">{s.n_markets}</td><td className="num">{s.n_messages}</td><td className="num">{s.n_deltas}</td>
              <td className="num">{s.n_trades}</td><td className={`num ${s.n_gaps ? "warn" : ""}`}>{s.n_gaps}</td>
              <td className={`num ${s.n_decode_errors ? "bad" : ""}`}>{s.n_decode_errors}</td><td className="num">{s.n_reconnects}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {detail && (
        <div className="card" data-testid="session-detail">
          <h3>Session #{detail.session.id}: quality</h3>
          <div className="kv">
            {Object.entries(detail.rows).map(([k, v]) => <span key={k}>{k} <b>{v}</b></span>)}
            <span>durability lag <b>{detail.durability_lag_ms === null ? "–" : `${fmt(detail.durability_lag_ms, 0)} ms`}</b></span>
          </div>
          <table className="grid small">
            <thead><tr><th>market</th><th>deltas</th><th>snapshots</th><th>trades</th><th>gaps</th><th>time invalid</th><th>first</th><th>last</th></tr></thead>
            <tbody>
              {detail.markets.map((m) => (
                <tr key={m.ticker}><td className="mono">{m.ticker}</td><td className="num">{m.deltas}</td><td className="num">{m.snapshots}</td>
                  <td className="num">{m.trades}</td><td className={`num ${m.gaps ? "warn" : ""}`}>{m.gaps}</td>
                  <td className="num">{fmt(m.time_invalid_s, 2)} s</td>
                  <td className="muted">{m.first_ms ? new Date(m.first_ms).toLocaleTimeString() : "–"}</td>
                  <td className="muted">{m.last_ms ? new Date(m.last_ms).toLocaleTimeString() : "–"}</td></tr>
              ))}
            </tbody>
          </table>
          <p className="muted">Rows are what PostgreSQL holds. Time invalid: from each gap to the market's next snapshot.</p>
        </div>
      )}
    </section>
  );
}
