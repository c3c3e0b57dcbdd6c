import { useState } from "react";
import { api, fmt, reason, usd, type Schemas } from "../api/client";
import { usePoll } from "../api/ws";
import { Plot } from "../components/Plot";

type Model = Schemas["ModelOut"];
const COLORS = ["#4ea1ff", "#3fb950", "#f2a444", "#ff5c8a", "#a371f7", "#e6edf3"];

export function Models() {
  const [status, setStatus] = useState<string>("");
  const [models, reload] = usePoll(
    async () => (await api.GET("/rl/models", { params: { query: status ? { status: status as Model["status"] as never } : {} } })).data,
    3000,
    [status],
  );
  const [picked, setPicked] = useState<number[]>([]);
  const [focus, setFocus] = useState<number | null>(null);
  const [msg, setMsg] = useState("");

  const act = async (what: "deploy" | "archive" | "rollback", id: number) => {
    const path = `/rl/models/{model_id}/${what}` as const;
    const r = await api.POST(path, { params: { path: { model_id: id } } });
    setMsg(r.error ? `error: ${reason(r.error)}` : `${what} #${id}: ok`);
    reload();
  };
  const toggle = (id: number) => setPicked((p) => (p.includes(id) ? p.filter((x) => x !== id) : [...p, id]));

  return (
    <section>
      <h2>Models</h2>
      <div className="controls">
        <label>status <select value={status} onChange={(e) => setStatus(e.target.value)}>
          <option value="">all</option>
          {["training", "ready", "deployed", "archived", "failed"].map((s) => <option key={s}>{s}</option>)}
        </select></label>
        <span className="muted" data-testid="models-msg">{msg}</span>
      </div>
      <table className="grid" data-testid="models-table">
        <thead><tr><th></th><th>id</th><th>name</th><th>v</th><th>algo</th><th>status</th><th>parent</th><th title="the kept policy on the held-out test split">test P&amp;L</th><th>Sharpe</th><th>win %</th><th>trades</th><th>created</th><th>actions</th></tr></thead>
        <tbody>
          {(models ?? []).slice().reverse().map((m) => {
            const ev = (m.metrics.eval as Record<string, Record<string, number>> | undefined)?.agent;
            return (
              <tr key={m.id} data-testid="model-row" className={m.id === focus ? "sel" : ""}>
                <td><input type="checkbox" checked={picked.includes(m.id)} onChange={() => toggle(m.id)} data-testid={`compare-${m.id}`} /></td>
                <td>#{m.id}</td>
                <td className="mono link" onClick={() => setFocus(m.id)}>{m.name}</td>
                <td>{m.version}</td><td>{m.algorithm}</td>
                <td><span className={`pill ${m.status}`} data-testid={`model-status-${m.id}`}>{m.status}</span></td>
                <td>{m.parent_id ? `#${m.parent_id}` : "–"}</td>
                <td className="num">{fmt(ev?.total_pnl)}</td><td className="num">{fmt(ev?.sharpe)}</td>
                <td className="num">{ev?.win_rate === undefined ? "–" : fmt(100 * ev.win_rate, 1)}</td><td className="num">{ev?.trades ?? "–"}</td>
                <td className="muted">{new Date(m.created_at).toLocaleString()}</td>
                <td className="btns">
                  <button onClick={() => act("deploy", m.id)} disabled={!m.checkpoint_path || m.status === "deployed" || m.status === "training"} data-testid={`deploy-${m.id}`}>deploy</button>
                  <button onClick={() => act("rollback", m.id)} disabled={m.status !== "deployed"}>rollback</button>
                  <button onClick={() => act("archive", m.id)} disabled={m.status === "archived" || m.status === "training"}>archive</button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {focus !== null && <ModelDetail id={focus} />}
      {picked.length >= 1 && <CompareView ids={picked} />}
    </section>
  );
}

function ModelDetail({ id }: { id: number }) {
  const [lin] = usePoll(async () => (await api.GET("/rl/models/{model_id}/lineage", { params: { path: { model_id: id } } })).data, 10000, [id]);
  if (!lin) return null;
  const m = lin.model;
  const parity = m.metrics.parity as Record<string, unknown> | undefined;
  return (
    <div className="card" data-testid="model-detail">
      <h3>{m.name} v{m.version} <span className="muted">#{m.id} · {m.algorithm} · config {m.config_hash.slice(0, 10)} · commit {m.git_commit?.slice(0, 8) ?? "–"}</span></h3>
      <p>lineage: {[...lin.ancestors].reverse().map((a) => `${a.name} v${a.version}`).join(" → ") || "(root)"} → <b>v{m.version}</b>
        {lin.descendants.length > 0 && <> → {lin.descendants.map((d) => `${d.name} v${d.version}`).join(", ")}</>}</p>
      {m.notes && <p>notes: {m.notes}</p>}
      <p className="muted">data: {String(m.data_window.dataset ?? "–")} · rows {String(m.data_window.rows ?? "–")} · markets {m.markets.length}</p>
      <h3>Parity report</h3>
      {parity ? (
        <table className="grid small"><tbody>
          {Object.entries(parity).map(([k, v]) => <tr key={k}><td>{k}</td><td className="mono">{typeof v === "object" ? JSON.stringify(v) : String(v)}</td></tr>)}
        </tbody></table>
      ) : <p className="muted">No parity report stored for this version (`kalshi-rl parity --session ID --model {m.id}` prints one).</p>}
    </div>
  );
}

function CompareView({ ids }: { ids: number[] }) {
  const [cmp] = usePoll(async () => (await api.GET("/rl/compare", { params: { query: { ids } } })).data, 10000, [ids.join(",")]);
  if (!cmp) return null;
  const policies = Array.from(new Set(cmp.models.flatMap((m) => Object.keys(m.evaluation))));
  // equity curves on one time axis: the union of timestamps, each curve stepped
  const ts = Array.from(new Set(cmp.models.flatMap((m) => m.paper.equity.map((e) => e[0])))).sort((a, b) => a - b);
  const curves = cmp.models.map((m) => {
    const map = new Map(m.paper.equity.map((e) => [e[0], e[1] / 10000]));
    return ts.map((t) => map.get(t) ?? null);
  });
  return (
    <div className="card" data-testid="compare">
      <h3>Compare</h3>
      <table className="grid small">
        <thead><tr><th>model</th><th>policy</th>{cmp.metric_names.map((n) => <th key={n}>{n}</th>)}</tr></thead>
        <tbody>
          {cmp.models.flatMap((m) => policies.filter((p) => p in m.evaluation).map((p) => (
            <tr key={`${m.model_id}-${p}`} className={p === "agent" ? "sel" : ""}>
              <td>{m.name} v{m.version}</td><td>{p}</td>
              {cmp.metric_names.map((n) => {
                const v = (m.evaluation[p] as Record<string, number>)[n];
                return <td key={n} className="num">{typeof v === "number" ? fmt(v, 3) : "–"}</td>;
              })}
            </tr>
          )))}
        </tbody>
      </table>
      <table className="grid small">
        <thead><tr><th>model</th><th>paper episodes</th><th>P&amp;L</th><th>fees</th><th>win rate</th><th>Sharpe</th><th>max DD</th></tr></thead>
        <tbody>
          {cmp.models.map((m) => (
            <tr key={m.model_id}><td>{m.name} v{m.version}</td><td className="num">{m.paper.episodes}</td><td className="num">{usd(m.paper.pnl)}</td>
              <td className="num">{usd(m.paper.fees)}</td><td className="num">{m.paper.win_rate === null ? "–" : fmt(100 * m.paper.win_rate, 1)}</td>
              <td className="num">{fmt(m.paper.sharpe)}</td><td className="num">{usd(m.paper.max_drawdown)}</td></tr>
          ))}
        </tbody>
      </table>
      {ts.length > 1 && (
        <Plot title="paper equity ($)" series={cmp.models.map((m, i) => ({ label: `${m.name} v${m.version}`, stroke: COLORS[i % COLORS.length] }))}
          data={[ts.map((t) => t / 1000), ...curves]} />
      )}
    </div>
  );
}
