import { Fragment, useCallback, useState } from "react";
import { api, px, qty, reason, usd } from "../api/client";
import { usePoll, useSocket } from "../api/ws";
import { Plot } from "../components/Plot";

const ACTIONS = ["hold", "buy_yes", "sell_yes", "buy_no", "sell_no"];

interface ActionRec {
  key: string;
  step: number;
  ticker: string;
  ts_ms: number;
  action: string;
  probs: number[];
  obs: number[];
  price: number | null;
  count: number;
  position: number;
  value: number | null;
  status: string;
  risk: string;
}

function toAction(m: any, i: number): ActionRec {
  const a = typeof m.action === "number" ? ACTIONS[m.action] ?? String(m.action) : String(m.action_name ?? m.action ?? "?");
  const tsNs = m.ts_ns ?? m.ts ?? 0;
  return {
    key: `${m.step ?? i}-${m.ticker ?? ""}-${tsNs}`,
    step: m.step ?? i,
    ticker: m.ticker ?? "?",
    ts_ms: tsNs > 1e14 ? tsNs / 1e6 : tsNs,
    action: a,
    probs: Array.isArray(m.probs) ? m.probs : [],
    obs: Array.isArray(m.obs) ? m.obs : [],
    price: typeof m.price === "number" && m.price >= 0 ? m.price : null,
    count: m.count ?? 0,
    position: m.position ?? 0,
    value: m.account_value ?? m.value ?? null,
    risk: m.risk && m.risk !== "OK" ? String(m.risk) : "",
    status: String(m.status_name ?? m.status ?? ""),
  };
}

export function Agent() {
  const [actor, reload] = usePoll(async () => (await api.GET("/rl/actor")).data, 1000);
  const [features] = usePoll(async () => (await api.GET("/rl/features")).data, 600_000);
  const [models] = usePoll(async () => (await api.GET("/rl/models", { params: { query: {} } })).data, 5000);
  const [actions, setActions] = useState<ActionRec[]>([]);
  const [open, setOpen] = useState<string | null>(null);
  const [msg, setMsg] = useState<string>("");
  const [pick, setPick] = useState<number | "">("");

  const onMsg = useCallback((m: any) => {
    if (m.type !== "action") return;
    setActions((xs) => [toAction(m, xs.length), ...xs].slice(0, 300));
  }, []);
  const sock = useSocket("/rl/ws/actions", onMsg);

  const call = async (p: Promise<{ error?: unknown }>, ok: string) => {
    const r = await p;
    setMsg(r.error ? `error: ${reason(r.error)}` : ok);
    reload();
  };
  const kill = () => call(api.POST("/rl/actor/kill", { body: { reason: "kill switch (dashboard)" } }), "halted");
  const stop = () => call(api.POST("/rl/actor/stop"), "stopped");
  const resume = () => call(api.POST("/rl/actor/resume"), "kill switch released, running");
  const start = () => pick !== "" && call(api.POST("/rl/actor/start", { body: { model_id: pick } }), "started");
  const sw = () => pick !== "" && call(api.POST("/rl/actor/switch", { body: { model_id: pick } }), "switched");

  const names = features ? [...features.market, ...features.account] : [];
  const hist = actor?.pnl_history ?? [];
  const t = hist.map((p) => p.ts_ms / 1000);
  const d = (k: "settlement" | "realized" | "open_marks" | "fees" | "total") => hist.map((p) => (k === "fees" ? -p[k] : p[k]) / 10000);
  const state = actor?.state ?? "none";

  return (
    <section>
      <h2>Agent</h2>
      <div className="row">
        <div className="col card">
          <div className="kv big">
            <span>state <b className={`state-${state}`} data-testid="actor-state">{state}</b></span>
            <span>model <b data-testid="actor-model">{actor?.model_name ? `${actor.model_name} v${actor.model_version} (#${actor.model_id})` : "–"}</b></span>
            <span>mode <b>{actor?.mode ?? "paper"}</b></span>
            <span>episode <b>{actor?.episode_id ?? "–"}</b></span>
            <span>actions <b>{actor?.n_actions ?? 0}</b></span>
            <span>cash <b>{usd(actor?.cash)}</b></span>
          </div>
          {actor?.halted_reason && <p className="bad">halted: {actor.halted_reason}</p>}
          <button className="kill" onClick={kill} disabled={!actor?.available || state === "halted"} data-testid="kill-switch">
            KILL SWITCH — cancel all orders and halt
          </button>
          <div className="controls">
            <select value={pick} onChange={(e) => setPick(e.target.value ? Number(e.target.value) : "")} data-testid="actor-model-pick">
              <option value="">model…</option>
              {(models ?? []).filter((m) => m.checkpoint_path && m.status !== "archived").map((m) => (
                <option key={m.id} value={m.id}>{m.name} v{m.version} ({m.status})</option>
              ))}
            </select>
            <button onClick={start} disabled={!actor?.available || pick === ""}>start</button>
            <button onClick={sw} disabled={!actor?.available || pick === ""}>switch</button>
            <button onClick={stop} disabled={!actor?.available}>stop</button>
            {state === "halted" && <button onClick={resume} data-testid="actor-resume">release kill switch &amp; resume</button>}
            <span className="muted">{msg}</span>
          </div>
          {!actor?.available && <p className="muted">This node runs no actor.</p>}
        </div>
        <div className="col grow card">
          <div className="kv">
            <span>P&amp;L <b data-testid="pnl-total">{usd(actor?.pnl?.total)}</b></span>
            <span>settlement <b>{usd(actor?.pnl?.settlement)}</b></span>
            <span>realized <b>{usd(actor?.pnl?.realized)}</b></span>
            <span>open marks <b>{usd(actor?.pnl?.open_marks)}</b></span>
            <span>fees <b>{usd(actor?.pnl?.fees)}</b></span>
          </div>
          <Plot
            title="P&L over time ($)"
            series={[
              { label: "total", stroke: "#e6edf3", width: 2 },
              { label: "settlement", stroke: "#4ea1ff" },
              { label: "realized", stroke: "#3fb950" },
              { label: "open marks", stroke: "#f2a444" },
              { label: "fees (−)", stroke: "#ff5c8a" },
            ]}
            data={[t, d("total"), d("settlement"), d("realized"), d("open_marks"), d("fees")]}
            testId="pnl-chart"
          />
        </div>
      </div>
      <div className="row">
        <div className="col card">
          <h3>Positions</h3>
          <table className="grid small" data-testid="positions">
            <thead><tr><th>market</th><th>position</th><th>avg px</th><th title="this market's P&amp;L: cash flows + the open position at its liquidation value">P&amp;L</th><th title="closed trades and settlement, after fees">realized</th></tr></thead>
            <tbody>
              {(actor?.positions ?? []).map((p) => (
                <tr key={p.ticker}><td className="mono">{p.ticker}</td><td className="num">{qty(p.position)}</td>
                  <td className="num">{p.avg_price === null ? "–" : (p.avg_price / 1000).toFixed(3)}</td>
                  <td className="num">{usd(p.mark_value)}</td><td className="num">{usd(p.realized)}</td></tr>
              ))}
            </tbody>
          </table>
          <h3>Resting orders</h3>
          <table className="grid small">
            <thead><tr><th>order</th><th>side</th><th>px</th><th>left</th><th>queue ahead</th></tr></thead>
            <tbody>
              {(actor?.orders ?? []).map((o) => (
                <tr key={o.order_id}><td className="mono">{o.order_id.slice(0, 8)}</td><td>{o.action} {o.side}</td>
                  <td className="num">{px(o.price)}</td><td className="num">{qty(o.remaining)}</td><td className="num">{qty(o.queue_ahead)}</td></tr>
              ))}
            </tbody>
          </table>
          <h3>Settlements</h3>
          {actor?.restore && (
            <p className="muted small" data-testid="restore-status">
              restored: {actor.restore.held} held, {actor.restore.settled} settled, {actor.restore.pending.length} pending, {actor.restore.failed} failed
              {actor.restore.pending.length > 0 ? ` (${actor.restore.pending.join(", ")})` : ""}
            </p>
          )}
          <table className="grid small" data-testid="settlements">
            <thead><tr><th>market</th><th>result</th><th>position</th><th title="what the position paid at settlement">payout</th><th>time</th></tr></thead>
            <tbody>
              {(actor?.settlements ?? []).map((s) => (
                <tr key={`${s.ticker}-${s.ts_ms}`} data-testid="settlement-row" data-ticker={s.ticker}>
                  <td className="mono">{s.ticker}</td><td>{s.result}</td><td className="num">{qty(s.position)}</td>
                  <td className="num" data-testid="settlement-payout">{usd(s.payout)}</td>
                  <td>{s.ts_ms ? new Date(s.ts_ms).toLocaleTimeString() : "–"}</td></tr>
              ))}
            </tbody>
          </table>
          {(actor?.settlements ?? []).length === 0 && <p className="muted" data-testid="settlements-empty">No settlements yet.</p>}
        </div>
        <div className="col grow card">
          <h3>Actions <span className="muted small">ws {sock} · click a row for its observation</span></h3>
          <table className="grid small" data-testid="action-feed">
            <thead><tr><th>time</th><th>market</th><th>action</th><th>probabilities</th><th>px</th><th>count</th><th>pos</th><th>value</th><th>status</th></tr></thead>
            <tbody>
              {actions.slice(0, 60).map((a) => (
                <Fragment key={a.key}>
                  <tr data-testid="action-row" onClick={() => setOpen(open === a.key ? null : a.key)} className="link">
                    <td>{a.ts_ms ? new Date(a.ts_ms).toLocaleTimeString() : "–"}</td>
                    <td className="mono">{a.ticker}</td>
                    <td><b>{a.action}</b></td>
                    <td><Probs p={a.probs} /></td>
                    <td className="num">{px(a.price)}</td>
                    <td className="num">{qty(a.count)}</td>
                    <td className="num">{qty(a.position)}</td>
                    <td className="num">{usd(a.value)}</td>
                    <td className="muted">{a.status}{a.risk ? ` (${a.risk.toLowerCase()})` : ""}</td>
                  </tr>
                  {open === a.key && (
                    <tr><td colSpan={9}>
                      <div className="obs" data-testid="observation">
                        {a.obs.length === 0 && <span className="muted">no observation recorded</span>}
                        {a.obs.map((v, i) => (
                          <span key={i}><i>{names[i] ?? `f${i}`}</i> {Number(v).toFixed(4)}</span>
                        ))}
                      </div>
                    </td></tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
          {actions.length === 0 && <p className="muted">No actions yet.</p>}
        </div>
      </div>
    </section>
  );
}

function Probs({ p }: { p: number[] }) {
  if (!p.length) return <span className="muted">–</span>;
  return (
    <span className="probs" title={p.map((x, i) => `${ACTIONS[i] ?? i}: ${x.toFixed(3)}`).join("\n")}>
      {p.map((x, i) => (
        <span key={i} className="pb" style={{ height: `${Math.max(2, 100 * x)}%` }} />
      ))}
      <span className="muted"> {Math.max(...p).toFixed(2)}</span>
    </span>
  );
}
