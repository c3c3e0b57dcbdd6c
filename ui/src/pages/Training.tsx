import { useCallback, useState } from "react";
import { api, fmt, reason, type Schemas } from "../api/client";
import { usePoll, useSocket } from "../api/ws";
import { Plot } from "../components/Plot";

type Run = Schemas["TrainingRunOut"];

export function Training() {
  const [runs, reloadRuns] = usePoll(async () => (await api.GET("/rl/training", { params: { query: {} } })).data, 3000);
  const [sessions] = usePoll(async () => (await api.GET("/rl/sessions", { params: { query: {} } })).data, 10000);
  const [sel, setSel] = useState<number | null>(null);
  const [bump, setBump] = useState(0);
  const [msg, setMsg] = useState("");
  const [form, setForm] = useState({
    name: "dash-ppo", algorithm: "ppo" as "ppo" | "a2c", timesteps: 20000, seed: 0, n_envs: 16,
    source: "synthetic", dataset: "sim:8:20:0", session_id: "",
  });

  const onMsg = useCallback((m: any) => {
    if (m.type === "training") {
      if (m.event !== "progress") reloadRuns();
      setBump((b) => b + 1);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  const sock = useSocket("/rl/ws/training", onMsg);

  const active = sel ?? runs?.[0]?.id ?? null;
  const [detail] = usePoll(
    async () => (active === null ? undefined : (await api.GET("/rl/training/{run_id}", { params: { path: { run_id: active } } })).data),
    5000,
    [active, bump],
  );

  const start = async (e: React.FormEvent) => {
    e.preventDefault();
    const body: Schemas["TrainingStart"] = {
      name: form.name, algorithm: form.algorithm, timesteps: form.timesteps, seed: form.seed, n_envs: form.n_envs,
      eval_every: Math.max(1000, Math.floor(form.timesteps / 5)),
      ...(form.source === "session" ? { session_id: Number(form.session_id) } : { dataset: form.dataset }),
    };
    const r = await api.POST("/rl/training", { body });
    setMsg(r.error ? `error: ${reason(r.error)}` : `job ${r.data?.job_id} started`);
    reloadRuns();
  };
  const stop = async (id: number) => {
    const r = await api.POST("/rl/training/{run_id}/stop", { params: { path: { run_id: id } } });
    setMsg(r.error ? `error: ${reason(r.error)}` : `stopping run ${id}`);
  };

  const prog = detail?.progress ?? [];
  const xs = (k: string) => {
    const pts = prog.filter((p) => k in p.metrics);
    return [pts.map((p) => p.timesteps), pts.map((p) => p.metrics[k])];
  };
  const lossKeys = Array.from(new Set(prog.flatMap((p) => Object.keys(p.metrics).filter((k) => k.startsWith("losses/") && k.slice(7).includes("loss")))));
  const lossX = prog.filter((p) => lossKeys.some((k) => k in p.metrics));

  return (
    <section>
      <h2>Training <span className="muted small">ws {sock}</span></h2>
      <div className="row">
        <form className="col card form" onSubmit={start} data-testid="train-form">
          <h3>Start a run</h3>
          <label>name <input value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} data-testid="train-name" /></label>
          <label>algorithm <select value={form.algorithm} onChange={(e) => setForm({ ...form, algorithm: e.target.value as "ppo" | "a2c" })}>
            <option value="ppo">PPO</option><option value="a2c">A2C</option></select></label>
          <label>timesteps <input type="number" value={form.timesteps} onChange={(e) => setForm({ ...form, timesteps: Number(e.target.value) })} data-testid="train-timesteps" /></label>
          <label>seed <input type="number" value={form.seed} onChange={(e) => setForm({ ...form, seed: Number(e.target.value) })} /></label>
          <label>envs <input type="number" value={form.n_envs} onChange={(e) => setForm({ ...form, n_envs: Number(e.target.value) })} /></label>
          <label>data <select value={form.source} onChange={(e) => setForm({ ...form, source: e.target.value })} data-testid="train-source">
            <option value="synthetic">generated / Parquet</option><option value="session">recorded session</option></select></label>
          {form.source === "session" ? (
            <label>session <select value={form.session_id} onChange={(e) => setForm({ ...form, session_id: e.target.value })}>
              <option value="">…</option>
              {(sessions ?? []).map((s) => <option key={s.id} value={s.id}>#{s.id} {s.mode} {s.n_deltas} deltas</option>)}
            </select></label>
          ) : (
            <label>dataset <input value={form.dataset} onChange={(e) => setForm({ ...form, dataset: e.target.value })} data-testid="train-dataset" /></label>
          )}
          <button type="submit" data-testid="train-start">Start training</button>
          <p className="muted" data-testid="train-msg">{msg}</p>
        </form>
        <div className="col grow card">
          <h3>Runs</h3>
          <table className="grid small" data-testid="runs-table">
            <thead><tr><th>run</th><th>model</th><th>algo</th><th>status</th><th>progress</th><th>reward</th><th title="validation P&amp;L of the latest evaluation; the model keeps the best one (its test-set P&amp;L is on the Models page)">last val. P&amp;L</th><th>fps</th><th></th></tr></thead>
            <tbody>
              {(runs ?? []).map((r: Run) => (
                <tr key={r.id} data-testid="run-row" className={`link ${r.id === active ? "sel" : ""}`} onClick={() => setSel(r.id)}>
                  <td>#{r.id}</td><td className="mono">{r.model_name ?? "–"} v{r.model_version ?? "?"}</td><td>{r.algorithm}</td>
                  <td><span className={`pill ${r.status}`}>{r.status}</span></td>
                  <td className="num" data-testid="run-progress">{r.timesteps}/{r.total_timesteps} ({fmt((100 * r.timesteps) / Math.max(1, r.total_timesteps), 0)}%)</td>
                  <td className="num">{fmt(r.last_metrics["charts/episodic_return"], 3)}</td>
                  <td className="num">{fmt(r.last_metrics["eval/total_pnl"], 2)}</td>
                  <td className="num">{fmt(r.last_metrics["charts/sps"], 0)}</td>
                  <td>{r.status === "running" && r.job_id !== null && <button onClick={(e) => { e.stopPropagation(); stop(r.id); }} data-testid={`stop-${r.id}`}>stop</button>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </div>
      {active !== null && (
        <div className="grid2" data-testid="train-curves">
          <Plot title={`run #${active}: episodic reward`} xTime={false} series={[{ label: "reward", stroke: "#4ea1ff" }]} data={xs("charts/episodic_return")} />
          <Plot title="validation P&L ($) per evaluation (the best one is kept)" xTime={false} series={[{ label: "eval P&L", stroke: "#3fb950" }]} data={xs("eval/total_pnl")} />
          <Plot title="losses" xTime={false}
            series={lossKeys.map((k, i) => ({ label: k.replace("losses/", ""), stroke: ["#f2a444", "#ff5c8a", "#a371f7", "#4ea1ff"][i % 4] }))}
            data={[lossX.map((p) => p.timesteps), ...lossKeys.map((k) => lossX.map((p) => p.metrics[k] ?? null))]} />
          <Plot title="throughput (env-steps/s)" xTime={false} series={[{ label: "fps", stroke: "#e6edf3" }]} data={xs("charts/sps")} />
        </div>
      )}
    </section>
  );
}
