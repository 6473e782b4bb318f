// The dashboard in a real browser: Debian's chromium driven by playwright-core,
// against a real rprd (the sanitizer build, unless RPR_BIN_DIR says otherwise)
// with real objects — a local-transport Server and a local git repository.
//
// One rprd and one browser for the whole file; the steps build on each other
// as a person's session would: read-only view, a viewer who cannot write, an
// admin who enrolls a server and sees it Reachable, checks it, deactivates and
// deletes it, enrolls a repo and a binding, commits, watches the run appear
// and its output stream, reads the logs, follows a Sync and syncs it now.
// Screenshots at 1280 and 375 px go to
// tests/browser/out/ (not committed).
import {after, before, test} from "node:test";
import assert from "node:assert/strict";
import {execFileSync, spawn} from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {chromium} from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const BIN = process.env.RPR_BIN_DIR || path.join(REPO, "build/asan/bin");
const OUT = path.join(HERE, "out");
const WAIT = 20000;

let rprd, state, tmp, base, adminToken, viewerToken, browser, page, work;
const scriptErrors = []; // uncaught errors and console errors (CSP violations among them)

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const {port} = s.address(); s.close(() => resolve(port)); });
    s.on("error", reject);
  });
}

function git(...args) {
  return execFileSync("git", args, {cwd: work, encoding: "utf8",
    env: {...process.env, GIT_AUTHOR_NAME: "Ada", GIT_AUTHOR_EMAIL: "ada@example.com",
      GIT_COMMITTER_NAME: "Ada", GIT_COMMITTER_EMAIL: "ada@example.com"}}).trim();
}

function commit(message) {
  fs.appendFileSync(path.join(work, "index.html"), `<p>${message}</p>\n`);
  git("add", "index.html");
  git("commit", "-q", "-m", message);
  git("push", "-q", "origin", "HEAD:refs/heads/main");
  return git("rev-parse", "HEAD");
}

async function api(method, p, body, token = adminToken) {
  const r = await fetch(base + p, {method, headers: {Authorization: `Bearer ${token}`, "Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body)});
  return {status: r.status, json: await r.json().catch(() => null)};
}

async function shoot(name) {
  for (const width of [1280, 375]) {
    await page.setViewportSize({width, height: width === 375 ? 812 : 900});
    await page.screenshot({path: path.join(OUT, `${name}-${width}.png`), fullPage: true});
  }
  await page.setViewportSize({width: 1280, height: 900});
}

let port;

async function startRprd() {
  rprd = spawn(path.join(BIN, "rprd"), ["--state-dir", state, "--listen", `unix:${state}/rpr.sock`,
    "--listen", `tcp:127.0.0.1:${port}`, "--anonymous-read", "--web-dir", path.join(REPO, "web"),
    "--allow-networks", "127.0.0.0/8,::1/128"],
  {stdio: ["ignore", "ignore", fs.openSync(path.join(tmp, "rprd.log"), "a")],
    env: {...process.env, LSAN_OPTIONS: `suppressions=${REPO}/tests/lsan.supp`}});
  for (let i = 0; i < 200 && !fs.existsSync(path.join(state, "admin.token")); i++)
    await new Promise((r) => setTimeout(r, 50));
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${base}/healthz`)).ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("rprd did not answer");
}

async function stopRprd() {
  if (!rprd || rprd.exitCode !== null) return;
  rprd.kill("SIGTERM");
  await new Promise((r) => rprd.once("exit", r));
}

before(async () => {
  fs.mkdirSync(OUT, {recursive: true});
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rpr-browser-"));
  state = path.join(tmp, "state");
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  await startRprd();
  adminToken = fs.readFileSync(path.join(state, "admin.token"), "utf8").trim();
  viewerToken = execFileSync(path.join(BIN, "rprctl"), ["--server", `unix:${state}/rpr.sock`, "--token", adminToken,
    "token", "create", "watcher", "--role", "viewer"], {encoding: "utf8"}).trim();

  // The repository the binding deploys from.
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", path.join(tmp, "site.git")]);
  work = path.join(tmp, "work");
  execFileSync("git", ["init", "-q", "-b", "main", work]);
  git("remote", "add", "origin", path.join(tmp, "site.git"));
  commit("first");

  browser = await chromium.launch({executablePath: "/usr/bin/chromium", headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]});
  page = await browser.newPage({viewport: {width: 1280, height: 900}});
  page.on("dialog", (d) => d.accept()); // confirm() before a delete
  page.on("pageerror", (e) => scriptErrors.push(String(e)));
  page.on("console", (m) => {
    // A refused request (401/403 in the read-only steps) is the test's point, not an error of the page.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) scriptErrors.push(m.text());
  });
});

after(async () => {
  await browser?.close();
  await stopRprd();
  const log = fs.readFileSync(path.join(tmp, "rprd.log"), "utf8");
  fs.writeFileSync(path.join(OUT, "rprd.log"), log);
  assert.ok(!/ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:/.test(log), "sanitizer report in rprd's log");
  assert.equal(rprd.exitCode, 0, "rprd exits 0 on SIGTERM");
  fs.rmSync(tmp, {recursive: true, force: true});
});

test("the first page is small and loads nothing from elsewhere", async (t) => {
  const sizes = [];
  const foreign = [];
  const count = (r) => {
    if (!r.url().startsWith(base)) foreign.push(r.url());
    if (r.url().includes("/api/v1/watch")) return; // a stream, not part of the page
    sizes.push(r.body().then((b) => b.length, () => 0));
  };
  page.on("response", count);
  await page.goto(base + "/");
  await page.getByRole("heading", {name: "Overview"}).waitFor();
  await page.getByText("Live: changes appear as they happen.").waitFor();
  page.off("response", count);
  const bytes = (await Promise.all(sizes)).reduce((a, b) => a + b, 0);
  assert.deepEqual(foreign, []);
  t.diagnostic(`first page: ${sizes.length} files, ${bytes} bytes`);
  assert.ok(bytes > 10000 && bytes < 150 * 1024, `first page transfer ${bytes} bytes`);
});

test("without a token the view is read-only and writes are refused", async () => {
  await page.goto(base + "/#/servers");
  await page.getByRole("heading", {name: "Servers"}).waitFor();
  assert.equal(await page.getByRole("button", {name: "Enroll a server"}).count(), 0);
  await page.getByText("Read-only").waitFor();
  const status = await page.evaluate(async () => (await fetch("/api/v1/apply", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: "[]"})).status);
  assert.equal(status, 401);
  await shoot("read-only");
});

test("a viewer token logs in but cannot write", async () => {
  await page.getByLabel("API token").fill(viewerToken);
  await page.getByRole("button", {name: "Log in"}).click();
  await page.getByText("Signed in as watcher (viewer)").waitFor();
  assert.equal(await page.getByRole("button", {name: "Enroll a server"}).count(), 0);
  const status = await page.evaluate(async () => (await fetch("/api/v1/apply", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: "[]"})).status);
  assert.equal(status, 403);
  // The cookie is HttpOnly: the page's script cannot read it.
  assert.equal(await page.evaluate(() => document.cookie), "");
  await page.getByRole("button", {name: "Log out"}).click();
  await page.getByLabel("API token").waitFor();
});

test("an admin enrolls a server, sees it Reachable, checks, deactivates and deletes it", async () => {
  await page.getByLabel("API token").fill(adminToken);
  await page.getByRole("button", {name: "Log in"}).click();
  await page.getByText("Signed in as admin (admin)").waitFor();
  await page.getByRole("button", {name: "Enroll a server"}).click();
  const dialog = page.getByRole("dialog", {name: "Enroll a server"});
  await dialog.getByLabel("Name").fill("box");
  await dialog.getByLabel("Labels").fill("role=web");
  await dialog.getByLabel("Transport").selectOption("local");
  await dialog.getByRole("button", {name: "Save"}).click();
  const row = page.getByRole("row").filter({hasText: "box"});
  await row.getByText("Reachable").waitFor({timeout: WAIT});

  await row.getByRole("button", {name: "Check now server box"}).click();
  await page.getByText("Check of box").waitFor({timeout: WAIT});
  assert.match(await page.locator("#check-uptime").innerText(), /load average/);
  await shoot("servers");

  await row.getByRole("button", {name: "Deactivate server box"}).click();
  await row.getByText("Inactive").waitFor({timeout: WAIT});
  assert.equal((await api("GET", "/api/v1/namespaces/default/servers/box")).json.spec.active, false);
  await row.getByRole("button", {name: "Delete server box"}).click();
  await page.getByRole("row").filter({hasText: "box"}).waitFor({state: "detached", timeout: WAIT});
  assert.equal((await api("GET", "/api/v1/namespaces/default/servers/box")).status, 404);
});

test("enroll a repo and a binding, commit, and watch the run and its output", async () => {
  assert.equal((await api("POST", "/api/v1/apply", [{apiVersion: "rpr/v1", kind: "Server",
    metadata: {name: "web-1", labels: {role: "web"}}, spec: {transport: "local"}}])).status, 200);

  await page.getByRole("link", {name: "Repos"}).click();
  await page.getByRole("button", {name: "Enroll a repo"}).click();
  let dialog = page.getByRole("dialog", {name: "Enroll a repo"});
  await dialog.getByLabel("Name").fill("site");
  await dialog.getByLabel("Provider").selectOption("git");
  await dialog.getByLabel("URL").fill(`file://${path.join(tmp, "site.git")}`);
  await dialog.getByLabel("Check interval").selectOption("1m");
  await dialog.getByRole("button", {name: "Save"}).click();
  const first = git("rev-parse", "HEAD");
  await page.getByRole("row").filter({hasText: "site"}).getByText(first.slice(0, 12)).waitFor({timeout: WAIT});

  await page.getByRole("link", {name: "Bindings"}).click();
  await page.getByRole("button", {name: "Create a binding"}).click();
  dialog = page.getByRole("dialog", {name: "Create a binding"});
  await dialog.getByLabel("Name").fill("deploy");
  await dialog.getByLabel("Repo").selectOption("site");
  await dialog.getByLabel("Server", {exact: true}).selectOption("web-1");
  await dialog.getByLabel("Command").fill('echo "hello $RPR_COMMIT"; sleep 2; echo done >&2');
  await dialog.getByRole("button", {name: "Save"}).click();
  await page.getByRole("row").filter({hasText: "deploy"}).getByRole("link", {name: "deploy-1"}).waitFor({timeout: WAIT});

  const sha = commit("second");
  await page.getByRole("link", {name: "Repos"}).click();
  await page.getByRole("button", {name: "Check now repo site"}).click();
  await page.getByRole("link", {name: "Runs"}).click();
  const link = page.getByRole("link", {name: "deploy-2"});
  await link.waitFor({timeout: WAIT});
  await link.click();
  const log = page.locator("#run-log");
  await log.getByText(`hello ${sha}`).waitFor({timeout: WAIT});
  assert.ok(!(await log.innerText()).includes("done"), "the output shows while the command still runs");
  await page.getByText("Succeeded").first().waitFor({timeout: WAIT});
  await log.getByText("err done").waitFor({timeout: WAIT});
  await shoot("run");
});

test("a run can be canceled from its page", async () => {
  const r = await api("POST", "/api/v1/apply", [{apiVersion: "rpr/v1", kind: "Binding", metadata: {name: "slow"},
    spec: {repo: "site", server: "web-1", command: "echo waiting; sleep 600"}}]);
  assert.equal(r.status, 200);
  await page.goto(base + "/#/runs/default/slow-1");
  await page.locator("#run-log").getByText("out waiting").waitFor({timeout: WAIT});
  await page.getByRole("button", {name: "Cancel run slow-1"}).click();
  await page.getByText("Canceled").first().waitFor({timeout: WAIT});
  assert.equal((await api("GET", "/api/v1/namespaces/default/runs/slow-1")).json.status.phase, "Canceled");
});

test("the logs view shows the last lines, more on request", async () => {
  await page.getByRole("link", {name: "Logs"}).click();
  const pre = page.locator("#activity-log");
  await pre.getByText("run default/deploy-2").first().waitFor({timeout: WAIT});
  assert.equal((await pre.innerText()).trim().split("\n").length, 10);
  await page.getByLabel("Last").first().selectOption("50");
  await page.waitForFunction(() => document.querySelector("#activity-log").innerText.trim().split("\n").length > 10);
});

test("the overview counts what is there, and the page works on a phone", async () => {
  await page.getByRole("link", {name: "Overview"}).click();
  await page.getByRole("heading", {name: "Needs attention"}).waitFor();
  const servers = page.locator(".card").filter({hasText: "servers"}).first();
  assert.equal((await servers.locator(".n").innerText()).trim(), "1");
  await page.getByRole("cell", {name: "controller"}).waitFor({timeout: WAIT});
  await shoot("overview");
  await page.setViewportSize({width: 375, height: 812});
  for (const view of ["", "servers", "repos", "bindings", "runs", "tokens", "logs"]) {
    await page.goto(`${base}/#/${view}`);
    await page.waitForTimeout(200);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= 375, `#/${view} is ${wide}px wide at 375px`);
  }
  await page.setViewportSize({width: 1280, height: 900});
});

test("keyboard: skip link, navigation and labelled controls", async () => {
  await page.goto("about:blank");
  await page.goto(base + "/#/servers");
  await page.getByRole("heading", {name: "Servers"}).waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  await page.locator("#nav a[href='#/bindings']").focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", {name: "Bindings"}).waitFor();
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll("input, select, textarea, button")]
    .filter((e) => !e.labels?.length && !e.getAttribute("aria-label") && !e.textContent.trim()).map((e) => e.outerHTML));
  assert.deepEqual(unlabelled, []);
});

test("a cross-site write with the cookie is refused", async () => {
  const cookies = await page.context().cookies();
  const c = cookies.find((x) => x.name === "rpr_token");
  assert.ok(c && c.httpOnly && c.sameSite === "Strict", JSON.stringify(cookies));
  const r = await fetch(base + "/api/v1/apply", {method: "POST", body: "[]",
    headers: {Cookie: `rpr_token=${c.value}`, Origin: "http://evil.example", "Content-Type": "application/json"}});
  assert.equal(r.status, 403);
  const ok = await fetch(base + "/api/v1/apply", {method: "POST", body: "[]",
    headers: {Cookie: `rpr_token=${c.value}`, Origin: base, "Content-Type": "application/json"}});
  assert.equal(ok.status, 200);
});

test("a pipeline job's page lists its tasks and shows each one's output", async () => {
  let r = await api("POST", "/api/v1/apply", [{apiVersion: "rpr/v1", kind: "Pipeline", metadata: {name: "ci"},
    spec: {tasks: {build: {script: "echo built it"}, test: {script: "echo tested it", dependsOn: ["build"]}}}}]);
  assert.equal(r.status, 200);
  r = await api("POST", "/api/v1/namespaces/default/pipelines/ci/runs", {});
  assert.equal(r.status, 201);
  await page.goto(`${base}/#/runs/default/${r.json.metadata.name}`);
  const tasks = page.getByRole("table", {name: "Tasks"});
  await tasks.getByRole("row").filter({hasText: "test"}).getByText("Succeeded").waitFor({timeout: WAIT});
  await page.getByLabel("Output of").selectOption("build");
  await page.locator("#run-log").getByText("out built it").waitFor({timeout: WAIT});
  await page.getByLabel("Output of").selectOption("");
  await page.locator("#run-log").getByText("rpr job Succeeded").waitFor({timeout: WAIT});
});

test("a pipeline is started from its list, with its arguments", async () => {
  const r = await api("POST", "/api/v1/apply", [{apiVersion: "rpr/v1", kind: "Pipeline", metadata: {name: "release"},
    spec: {args: {target: {default: "staging", description: "where to"}}, tasks: {go: {script: "echo to $target"}}}}]);
  assert.equal(r.status, 200);
  await page.getByRole("link", {name: "Pipelines"}).click();
  await page.getByRole("button", {name: "Start pipeline release"}).click();
  const dialog = page.getByRole("dialog", {name: "Start pipeline release"});
  assert.equal(await dialog.getByLabel("target").inputValue(), "staging");
  await dialog.getByLabel("target").fill("prod");
  await dialog.getByRole("button", {name: "Save"}).click();
  await page.getByRole("heading", {name: "Run release-1"}).waitFor({timeout: WAIT});
  await page.getByLabel("Output of").selectOption("go");
  await page.locator("#run-log").getByText("out to prod").waitFor({timeout: WAIT});
  await shoot("pipeline-run");
});

test("an object from a config repo is marked, and editing it warns; the page reconnects", async () => {
  // No GitOps sync yet to mark one: the store's row is marked while rprd is down.
  await stopRprd();
  assert.equal(rprd.exitCode, 0);
  execFileSync("sqlite3", [path.join(state, "state.db"),
    "UPDATE objects SET json = json_set(json, '$.metadata.managedBy', 'gitops/config') WHERE kind = 'Repo' AND name = 'site'"]);
  await startRprd();
  await page.goto(base + "/#/repos");
  const row = page.getByRole("row").filter({hasText: "site"});
  await row.getByText("managed").waitFor({timeout: WAIT});
  await row.getByRole("button", {name: "Edit repo site"}).click();
  const dialog = page.getByRole("dialog", {name: "Edit repo site"});
  await dialog.getByText("the config repo will win").waitFor();
  await dialog.getByRole("button", {name: "Cancel"}).click();

  // The stream survives a restart of rprd: the page reconnects by itself.
  await stopRprd();
  await page.getByText(/Disconnected/).waitFor({timeout: WAIT});
  await startRprd();
  await page.getByText("Live: changes appear as they happen.").waitFor({timeout: WAIT});
  await row.getByText("managed").waitFor({timeout: WAIT});
});

// The fake GitHub (tests/github_fake.py) with repository acme/site, a token and the stand-in runner release.
async function startFakeGitHub() {
  const fake = spawn("python3", [path.join(REPO, "tests/github_fake.py"), "--port", "0"], {stdio: ["ignore", "pipe", "ignore"]});
  const fport = await new Promise((resolve) => fake.stdout.once("data", (d) => resolve(String(d).trim())));
  const gh = `http://127.0.0.1:${fport}`;
  const post = (p, body) => fetch(gh + p, {method: "POST", body: JSON.stringify(body)});
  await post("/_fake/repos", {owner: "acme", name: "site"});
  await post("/_fake/tokens", {token: "ghp_BrowserRunnerToken0123456789abcdef"});
  const tarball = execFileSync("python3", ["-c",
    "import sys; sys.path.insert(0, sys.argv[1]); from runner_release import build; print(build(sys.argv[2])[0])",
    path.join(REPO, "tests/integration"), tmp], {encoding: "utf8"}).trim();
  await post("/_fake/runner_release", {path: tarball});
  return {fake, gh, post};
}

test("the runners page lists instances; an admin scales a runner to 0 and deletes it", async () => {
  // The runner on a local Server.
  const {fake, gh} = await startFakeGitHub();
  try {
    assert.equal((await api("POST", "/api/v1/apply", [
      {apiVersion: "rpr/v1", kind: "Token", metadata: {name: "gh"}, spec: {type: "github", value: "ghp_BrowserRunnerToken0123456789abcdef"}},
      {apiVersion: "rpr/v1", kind: "Repo", metadata: {name: "gh-site"},
        spec: {provider: "github", owner: "acme", name: "site", apiURL: gh, tokenRef: "gh", interval: "1h"}},
      {apiVersion: "rpr/v1", kind: "Server", metadata: {name: "rbox"}, spec: {transport: "local"}},
      {apiVersion: "rpr/v1", kind: "Runner", metadata: {name: "ci"},
        spec: {repo: "gh-site", tokenRef: "gh", server: "rbox", replicas: 1, installDir: path.join(tmp, "runners"),
          syncInterval: "1s"}}])).status, 200);
    await page.goto(base + "/#/runners");
    await page.getByRole("heading", {name: "Runners"}).waitFor();
    const inst = page.getByRole("table", {name: "Runner instances"}).getByRole("row").filter({hasText: "rbox"});
    await inst.getByText("idle").waitFor({timeout: WAIT});
    assert.match(await inst.innerText(), /pid \d+/);
    await shoot("runners");

    await page.getByRole("button", {name: "Scale runner ci"}).click();
    const dialog = page.getByRole("dialog", {name: "Scale runner ci"});
    await dialog.getByLabel("Replicas").fill("0");
    await dialog.getByRole("button", {name: "Save"}).click();
    await page.getByText("No runner instances.").waitFor({timeout: WAIT});
    assert.equal((await api("GET", "/api/v1/namespaces/default/runners/ci")).json.spec.replicas, 0);

    await page.getByRole("button", {name: "Delete runner ci"}).click();
    await page.getByRole("table", {name: "Runners"}).getByRole("row").filter({hasText: "gh-site"})
      .waitFor({state: "detached", timeout: WAIT});
    assert.equal((await api("GET", "/api/v1/namespaces/default/runners/ci")).status, 404);
    const left = await (await fetch(gh + "/_fake/runners")).json();
    assert.deepEqual(left.runners, []);
  } finally {
    fake.kill("SIGTERM");
  }
});

test("the runners page shows an autoscaled runner's min, max, desired and its scale decisions", async () => {
  // The fake GitHub delivers signed workflow_job webhooks to this rprd; the runners on a local Server.
  const {fake, gh, post} = await startFakeGitHub();
  try {
    await post("/_fake/hook", {url: `${base}/hooks/github`, secret: "browser-hook-secret-0123456789"});
    assert.equal((await api("POST", "/api/v1/apply", [
      {apiVersion: "rpr/v1", kind: "Token", metadata: {name: "gh"}, spec: {type: "github", value: "ghp_BrowserRunnerToken0123456789abcdef"}},
      {apiVersion: "rpr/v1", kind: "Token", metadata: {name: "hooks"}, spec: {type: "webhook", value: "browser-hook-secret-0123456789"}},
      {apiVersion: "rpr/v1", kind: "Repo", metadata: {name: "gh-site"},
        spec: {provider: "github", owner: "acme", name: "site", apiURL: gh, tokenRef: "gh", interval: "1h"}},
      {apiVersion: "rpr/v1", kind: "Server", metadata: {name: "abox"}, spec: {transport: "local"}},
      {apiVersion: "rpr/v1", kind: "Runner", metadata: {name: "auto"},
        spec: {repo: "gh-site", tokenRef: "gh", server: "abox", labels: ["gpu"], installDir: path.join(tmp, "autorunners"),
          syncInterval: "1s", autoscale: {min: 0, max: 4, idle: 1, interval: "1h", webhookTokenRef: "hooks"}}}])).status, 200);
    await page.goto(base + "/#/runners");
    const row = page.getByRole("table", {name: "Runners"}).getByRole("row").filter({hasText: "gh-site"});
    await row.getByRole("cell", {name: "1 / 1"}).waitFor({timeout: WAIT});
    await post("/_fake/jobs_queue", {repo: "acme/site", count: 2, labels: ["self-hosted", "gpu"], duration: 1});
    const decisions = page.getByRole("table", {name: "Scale decisions"});
    await decisions.getByText(/scaled 1 → 3: [12] queued jobs? needs? \[gpu\]/).waitFor({timeout: WAIT}).catch(async (e) => {
      const st = (await api("GET", "/api/v1/namespaces/default/runners/auto")).json?.status;
      throw new Error(`${e.message}\nstatus: ${JSON.stringify(st)}\njobs: ${await (await fetch(gh + "/_fake/jobs")).text()}`);
    });
    const cells = await row.getByRole("cell").allInnerTexts();
    assert.deepEqual(cells.slice(4, 6), ["0", "4"]); // Min, Max
    await decisions.getByText("scaled 0 → 1").waitFor();
    await shoot("runners-autoscale");

    await page.getByRole("button", {name: "Scale runner auto"}).click();
    const dialog = page.getByRole("dialog", {name: "Scale runner auto"});
    await dialog.getByLabel("Max").fill("2");
    await dialog.getByRole("button", {name: "Save"}).click();
    await row.getByRole("cell", {name: "2", exact: true}).first().waitFor({timeout: WAIT});
    assert.equal((await api("GET", "/api/v1/namespaces/default/runners/auto")).json.spec.autoscale.max, 2);

    await page.getByRole("button", {name: "Delete runner auto"}).click();
    await row.waitFor({state: "detached", timeout: 3 * WAIT});
  } finally {
    fake.kill("SIGTERM");
  }
});

test("an admin runs a command on servers; the page shows each server's result", async () => {
  assert.equal((await api("POST", "/api/v1/apply", [{apiVersion: "rpr/v1", kind: "Server",
    metadata: {name: "box-1", labels: {site: "north"}}, spec: {transport: "local"}}])).status, 200);
  await page.getByRole("link", {name: "Commands"}).click();
  await page.getByRole("button", {name: "Run a command"}).click();
  const dialog = page.getByRole("dialog", {name: "Run a command"});
  await dialog.getByLabel("Name").fill("hello-north");
  await dialog.getByLabel("Or servers with labels").fill("site=north");
  await dialog.getByLabel("Command").fill('echo "hello from $RPR_SERVER"');
  await dialog.getByRole("button", {name: "Save"}).click();
  const row = page.getByRole("row").filter({hasText: "hello-north"});
  await row.getByText("1 of 1 done").waitFor({timeout: WAIT});
  await row.getByText("Succeeded").first().waitFor({timeout: WAIT});
  const st = (await api("GET", "/api/v1/namespaces/default/commands/hello-north")).json.status;
  assert.deepEqual(st.targets, ["box-1"]);
  await row.getByRole("link", {name: "Succeeded"}).click();
  await page.locator("#run-log").getByText("hello from box-1").waitFor({timeout: WAIT});
  await shoot("commands");
});

test("the Syncs page lists a Sync, its inventory and errors, and syncs it now", async () => {
  // A config repository of its own, with one (inactive) Server.
  const bare = path.join(tmp, "config.git"), cwork = path.join(tmp, "config-work");
  const cgit = (...args) => execFileSync("git", args, {cwd: cwork, encoding: "utf8",
    env: {...process.env, GIT_AUTHOR_NAME: "Ada", GIT_AUTHOR_EMAIL: "ada@example.com",
      GIT_COMMITTER_NAME: "Ada", GIT_COMMITTER_EMAIL: "ada@example.com"}}).trim();
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", bare]);
  execFileSync("git", ["init", "-q", "-b", "main", cwork]);
  cgit("remote", "add", "origin", bare);
  fs.mkdirSync(path.join(cwork, "fleet"));
  fs.writeFileSync(path.join(cwork, "fleet", "web.yaml"),
    "apiVersion: rpr/v1\nkind: Server\nmetadata: {name: cfg-web}\nspec: {host: 127.0.0.1, port: 1, active: false}\n");
  cgit("add", "-A");
  cgit("commit", "-q", "-m", "fleet");
  cgit("push", "-q", "origin", "HEAD:refs/heads/main");
  assert.equal((await api("POST", "/api/v1/apply", [
    {apiVersion: "rpr/v1", kind: "Repo", metadata: {name: "config"}, spec: {provider: "git", url: `file://${bare}`, interval: "1h"}},
    {apiVersion: "rpr/v1", kind: "Sync", metadata: {name: "fleet"}, spec: {repo: "config", path: "fleet", interval: "1h"}},
  ])).status, 200);

  await page.goto(base + "/#/");
  await page.getByRole("link", {name: "Syncs"}).click();
  const row = page.getByRole("row").filter({hasText: "fleet"});
  await row.getByText("Applied").waitFor({timeout: WAIT});
  await row.getByText("1 objects").click();
  await page.getByRole("list", {name: "inventory of fleet"}).getByText("Server default/cfg-web").waitFor();

  fs.writeFileSync(path.join(cwork, "fleet", "broken.yaml"), "kind: Server\nmetadata: {name: broken}\nspec: {port: 0}\n");
  cgit("add", "-A");
  cgit("commit", "-q", "-m", "broken");
  cgit("push", "-q", "origin", "HEAD:refs/heads/main");
  await row.getByRole("button", {name: "Sync now sync fleet"}).click();
  await row.getByText("ValidationFailed").waitFor({timeout: WAIT});
  // The list opened above stays open while the page redraws with the errors.
  await row.getByText(/\d+ errors/).waitFor();
  await page.getByRole("list", {name: "errors of fleet"}).getByText(/fleet\/broken\.yaml:3:14: Server\/broken: spec.port/).waitFor();
  await shoot("syncs");
});

test("no page threw or broke its content security policy", () => {
  assert.deepEqual(scriptErrors, []);
});
