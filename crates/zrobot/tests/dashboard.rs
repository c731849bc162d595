//! The web dashboard and the API viewer driven in a real browser: headless
//! Chromium through chromedriver, against real robot processes.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
//! Screenshots of each view are written to `$CARGO_TARGET_TMPDIR/dashboard/`
//! (or `ZROBOT_SCREENSHOTS` when set).

mod util;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{json, Value};
use util::{new_service, template_repo, RobotProcess};

const PRODUCER_YAML: &str = "version: 1.0.0\n";
const PRODUCER_LUA: &str = r#"
local p = {}
function p.slow(self, args)
  self.log:info("making " .. args.s)
  robot.sleep(args.s)
  return {made = args.s}
end
function p.fail(self) error("the disk is full") end
function p.shout(self, args)
  self.log:info(args.text)
  error(args.text)
end
return p
"#;
const CONSUMER_YAML: &str = "version: 1.0.0\n";
const CONSUMER_LUA: &str = r#"
local c = {}
function c.use(self, args)
  local services = robot.services
  if args.robot then services = robot.robots[args.robot].services end
  local p = services:find_or_create("producer", args.producer, {})
  return p:schedule_action("slow", {s = args.s}):wait(60)
end
return c
"#;

fn repo(dir: &Path) -> String {
    let repo = template_repo(
        dir,
        &[
            ("templates/producer/template.yaml", PRODUCER_YAML),
            ("templates/producer/producer.lua", PRODUCER_LUA),
            ("templates/consumer/template.yaml", CONSUMER_YAML),
            ("templates/consumer/consumer.lua", CONSUMER_LUA),
        ],
    );
    format!("file://{}", repo.display())
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{bin}` ({e}): the dashboard test drives headless Chromium; \
                     install Debian's chromium and chromium-driver (apt-get install chromium \
                     chromium-driver), or name the driver in CHROMEDRIVER"
                )
            });
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self) -> Browser {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1400,900"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let caps = caps.as_object().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(caps.clone());
            match builder.connect(&self.url).await {
                Ok(b) => return b,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver at {} gave no browser: {e}", self.url),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's `POST /session/{id}/se/log`: the browser's console
/// messages since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// The console errors (and CSP violations) the page printed since last asked.
async fn console_errors(browser: &Browser) -> Vec<String> {
    let log = browser.issue_cmd(BrowserLog).await.unwrap();
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["level"] == "SEVERE")
        .map(|m| m["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn shots_dir() -> PathBuf {
    let dir = std::env::var_os("ZROBOT_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
    let path = shots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Waits up to `within` for an element matching `css`.
async fn element(browser: &Browser, css: &str, within: Duration) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(within)
        .every(Duration::from_millis(25))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page within {within:?}: {e}"))
}

/// Waits up to `within` for `css`'s text to contain `text`.
async fn text_in(browser: &Browser, css: &str, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let now = match browser.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if now.contains(text) {
            return now;
        }
        if Instant::now() > deadline {
            panic!("`{css}` did not show `{text}` within {within:?}; it shows: {now}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The guid of the task the graph draws `task` waiting on (within 5 s).
async fn waited_on(browser: &Browser, task: uuid::Uuid) -> String {
    let edge = format!("path.edge[data-kind='waits_on'][data-from='{task}']");
    element(browser, &edge, Duration::from_secs(5))
        .await
        .attr("data-to")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the edge of {task} names no task"))
}

async fn js(browser: &Browser, script: &str) -> Value {
    browser.execute(script, vec![]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_services_tasks_logs_and_the_graph_live() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let b = RobotProcess::start(&tmp.path().join("b"), &["--god", "-T", &url]);
    let a = RobotProcess::start(
        &tmp.path().join("a"),
        &["--god", "-T", &url, "--robot", &format!("b={}", b.url)],
    );
    let api = a.god_client();
    let disk = new_service(&api, "producer", "disk").await;
    let web = new_service(&api, "consumer", "web").await;
    let shop = new_service(&api, "consumer", "shop").await;
    let queued = new_service(&api, "consumer", "api").await;
    new_service(&b.god_client(), "producer", "far").await;

    let driver = Driver::start();
    let browser = driver.browser().await;
    browser.goto(&format!("{}/", a.url)).await.unwrap();

    // Without a credential: connected, services listed (the robot is open)
    // but no data shown, and no error.
    element(&browser, "#live.on", Duration::from_secs(10)).await;
    let row = format!("#services tr[data-guid='{disk}']");
    element(&browser, &row, Duration::from_secs(5))
        .await
        .click()
        .await
        .unwrap();
    text_in(
        &browser,
        "#detail",
        "Shown only with the god token",
        Duration::from_secs(5),
    )
    .await;
    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // The god token pasted once: kept in the tab's session storage, not in
    // the URL; the service's data shows.
    let token = a.god_token();
    element(&browser, "#cred-token", Duration::from_secs(1))
        .await
        .send_keys(&token)
        .await
        .unwrap();
    browser
        .find(Locator::Css("#cred-use"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    element(&browser, "#detail pre.data", Duration::from_secs(5)).await;
    let kept = js(
        &browser,
        "return [location.href, sessionStorage.getItem('zrobot.credential')]",
    )
    .await;
    assert!(!kept[0].as_str().unwrap().contains(&token), "{kept}");
    assert!(kept[1].as_str().unwrap().contains(&token), "{kept}");
    text_in(&browser, "#detail h2", "disk", Duration::from_secs(5)).await;

    // A task scheduled over REST appears within 1 s, without a reload.
    let scheduled = Instant::now();
    let task = api.schedule(disk, "slow", json!({"s": 0.3})).await.unwrap();
    element(
        &browser,
        &format!("tr[data-task='{}']", task.guid),
        Duration::from_secs(1),
    )
    .await;
    let seen = scheduled.elapsed();
    assert!(seen < Duration::from_secs(1), "seen after {seen:?}");
    // Its log line follows live, and it finishes ok.
    text_in(&browser, "#log", "making 0.3", Duration::from_secs(3)).await;
    element(
        &browser,
        &format!("tr.task.ok[data-task='{}']", task.guid),
        Duration::from_secs(5),
    )
    .await;
    screenshot(&browser, "services").await;

    // A failing task shows its eco; opened, its traceback.
    let failed = api.schedule(disk, "fail", json!({})).await.unwrap();
    let row = format!("tr.task.error[data-task='{}']", failed.guid);
    element(&browser, &row, Duration::from_secs(5)).await;
    text_in(
        &browser,
        &format!("{row} td.eco"),
        "the disk is full",
        Duration::from_secs(2),
    )
    .await;
    browser
        .find(Locator::Css(&row))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_in(
        &browser,
        "pre.trace",
        "producer.lua:8",
        Duration::from_secs(5),
    )
    .await;
    screenshot(&browser, "failed-task").await;

    // Markup a template writes in its log or its error is shown as text:
    // it runs nothing and adds no element.
    let markup = r#"<img src=x onerror="document.title='owned'"><b>bold</b>"#;
    let shout = api
        .schedule(disk, "shout", json!({ "text": markup }))
        .await
        .unwrap();
    let row = format!("tr.task.error[data-task='{}']", shout.guid);
    text_in(
        &browser,
        &format!("{row} td.eco"),
        markup,
        Duration::from_secs(5),
    )
    .await;
    text_in(&browser, "#log", markup, Duration::from_secs(5)).await;
    let injected = js(
        &browser,
        "return [document.title, document.querySelectorAll('#detail img, #detail b').length]",
    )
    .await;
    assert_eq!(
        injected,
        json!(["zrobot", 0]),
        "markup ran or made elements"
    );

    // The graph: a consumer waiting on its producer here, another on a
    // producer of robot b, drawn in b's group.
    let waiting = api
        .schedule(web, "use", json!({"producer": "disk", "s": 4}))
        .await
        .unwrap();
    let far = api
        .schedule(
            shop,
            "use",
            json!({"producer": "far", "robot": "b", "s": 4}),
        )
        .await
        .unwrap();
    // A second consumer of disk: its producer task queues behind the first.
    let behind = api
        .schedule(queued, "use", json!({"producer": "disk", "s": 4}))
        .await
        .unwrap();
    browser
        .find(Locator::Css("#tab-graph"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let to = waited_on(&browser, waiting.guid).await;
    let producer = element(
        &browser,
        &format!("g.node[data-guid='{to}']"),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        producer.attr("data-service").await.unwrap().as_deref(),
        Some("disk")
    );
    element(
        &browser,
        &format!("g.node[data-guid='{}']", waiting.guid),
        Duration::from_secs(1),
    )
    .await;
    let far_to = waited_on(&browser, far.guid).await;
    let far_node = element(
        &browser,
        &format!("g.node.remote[data-guid='{far_to}']"),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        far_node.attr("data-service").await.unwrap().as_deref(),
        Some("far")
    );
    element(
        &browser,
        "g.group.remote[data-robot='b']",
        Duration::from_secs(1),
    )
    .await;
    let second = waited_on(&browser, behind.guid).await;
    element(
        &browser,
        &format!("path.edge[data-kind='queued_behind'][data-from='{second}'][data-to='{to}']"),
        Duration::from_secs(5),
    )
    .await;
    text_in(
        &browser,
        "#graph-text",
        "web · use waits on disk · slow",
        Duration::from_secs(1),
    )
    .await;
    screenshot(&browser, "graph").await;

    // The templates, by repository.
    browser
        .find(Locator::Css("#tab-templates"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_in(&browser, "#templates", "producer", Duration::from_secs(5)).await;
    screenshot(&browser, "templates").await;
    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // The API document, in its viewer, with no error either.
    browser.goto(&format!("{}/apidocs", a.url)).await.unwrap();
    text_in(
        &browser,
        ".swagger-ui .info",
        "zrobot",
        Duration::from_secs(10),
    )
    .await;
    element(&browser, ".opblock-tag", Duration::from_secs(5)).await;
    screenshot(&browser, "apidocs").await;
    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "console errors on /apidocs: {errors:?}");

    browser.close().await.unwrap();
}
