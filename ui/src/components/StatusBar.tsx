import { useState } from "react";
import { fmt, type Schemas } from "../api/client";
import { useSocket } from "../api/ws";

type Status = Schemas["Status"];

/** The feed's p99 bucket bound (us) as "N µs" or "N ms". */
function latencyBound(us: number): string {
  return us >= 1000 ? `${fmt(us / 1000, 0)} ms` : `${fmt(us, 0)} µs`;
}

export function StatusBar() {
  const [st, setSt] = useState<Status | null>(null);
  const sock = useSocket("/rl/ws/status", (m) => {
    if (m.type === "status") setSt(m as Status);
  });
  if (!st) return <div className="statusbar" data-testid="status-bar">connecting… ({sock})</div>;
  const feedOk = st.feed?.connected ?? false;
  return (
    <div className={`statusbar health-${st.health}`} data-testid="status-bar">
      <span className={`pill ${st.health}`} title={st.reasons.join(", ")}>{st.health}</span>
      <span data-testid="status-feed">
        feed <b className={feedOk ? "ok" : "bad"}>{feedOk ? "up" : "down"}</b>
        {st.feed && (
          <>
            {" "}· {fmt(st.feed.msgs_per_s, 0)} msg/s ·{" "}
            <span title="receive -> book latency: the 99th percentile lies in the histogram bucket up to this bound (1-2-5 steps)">
              p99 ≤{latencyBound(st.feed.latency_p99_us)}
            </span>
          </>
        )}
      </span>
      <span data-testid="status-books" title="waiting: listed, not open yet or first book not here yet; closed: closed, determined or no longer followed">
        books <b className="ok">{st.books_valid}</b> valid
        {st.books_invalid > 0 && <> · <b className="bad" data-testid="status-books-invalid">{st.books_invalid} invalid</b></>}
        <span className="muted"> · {st.books_waiting} waiting · {st.books_closed} closed</span>
      </span>
      <span>ring <b className={st.ring_occupancy > 0.5 ? "warn" : ""}>{fmt(100 * st.ring_occupancy, 1)}%</b></span>
      <span>
        DB <b className={st.db_up ? "ok" : "bad"}>{st.db_up ? "up" : "DOWN"}</b> lag {fmt(st.db_lag_ms, 0)} ms
      </span>
      <span data-testid="status-actor">
        actor <b className={`state-${st.actor_state}`}>{st.actor_state}</b>
        {st.actor_model_id !== null && <> · model #{st.actor_model_id}</>}
      </span>
      {st.training_running > 0 && <span>training ×{st.training_running}</span>}
      <span className="muted">{st.mode} · session {st.session_id ?? "–"} · ws {sock}</span>
    </div>
  );
}
