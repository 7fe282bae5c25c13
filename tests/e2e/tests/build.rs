//! `docker build` (the classic builder, as CLI 28 speaks it without buildx) and docker-py's
//! `images.build` against berthd: every instruction, multi-stage, the cache, .dockerignore, build
//! args, failures and hostile contexts.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_e2e::{err, out, Berthd, Bounded};
use serde_json::Value;

fn context(d: &Berthd, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = d.root.join(name);
    for (p, content) in files {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, content).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn build(d: &Berthd, dir: &Path, args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.root.join("docker-config"))
        .env("DOCKER_BUILDKIT", "0")
        .arg("build")
        .args(args)
        .arg(dir)
        .bounded()
}

fn build_ok(d: &Berthd, dir: &Path, args: &[&str]) -> String {
    let o = build(d, dir, args);
    assert!(o.status.success(), "build {args:?} failed:\n{}\n{}\n--- berthd ---\n{}", out(&o), err(&o), d.log_tail());
    out(&o)
}

fn inspect(d: &Berthd, name: &str) -> Value {
    let v: Value = serde_json::from_str(&d.ok(&["image", "inspect", name])).unwrap();
    v[0].clone()
}

/// Serves one file over HTTP on loopback for ADD <url>; returns the URL.
fn serve_once(body: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    format!("http://127.0.0.1:{port}/files/remote.txt")
}

#[test]
fn every_instruction() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    // A local tar archive for ADD to unpack.
    let mut tb = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    tb.append_data(&mut h, "inner/file.txt", &b"tar"[..]).unwrap();
    let archive = tb.into_inner().unwrap();
    let url = serve_once(b"from the web\n");
    let dockerfile = format!(
        r#"# syntax=docker/dockerfile:1
# escape=\
ARG BASE=busybox
FROM ${{BASE}} AS base
MAINTAINER Berth Tests <tests@berth>
LABEL com.example.a="one" \
      com.example.b=two
ENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH
ARG VERSION=1.0
WORKDIR $APP_HOME
WORKDIR sub
RUN echo "version ${{VERSION}}" > version.txt
COPY --chown=1000:1000 --chmod=640 a.txt ./
COPY dir/ /copied/
COPY <<EOF /etc/motd
welcome to $APP_HOME
EOF
RUN <<EOS
set -e
echo heredoc-ran > /heredoc.txt
EOS
ADD archive.tar /unpacked/
ADD {url} /downloads/
SHELL ["/bin/sh", "-ec"]
RUN [ "$(cat version.txt)" = "version 1.0" ]
USER 1000:1000
EXPOSE 8080 53/udp 9000-9001
VOLUME /data
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD ["true"]
ONBUILD RUN echo triggered > /tmp/onbuild.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /etc/motd"]
"#
    );
    let dir = context(
        &d,
        "ctx",
        &[("Dockerfile", dockerfile.as_str()), ("a.txt", "A\n"), ("dir/x", "X\n"), ("dir/deep/y", "Y\n")],
    );
    std::fs::write(dir.join("archive.tar"), &archive).unwrap();
    let o = build_ok(&d, &dir, &["-t", "every:1"]);
    assert!(o.contains("Step 1/24 : FROM ${BASE} AS base"), "{o}");
    assert!(o.contains(" ---> Running in "), "{o}");
    assert!(o.contains("Successfully tagged every:1"), "{o}");

    let i = inspect(&d, "every:1");
    let c = &i["Config"];
    assert_eq!(i["Author"], "Berth Tests <tests@berth>");
    assert_eq!(c["Labels"]["com.example.a"], "one");
    assert_eq!(c["Labels"]["com.example.b"], "two");
    let env: Vec<&str> = c["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(env.contains(&"APP_HOME=/srv/app"), "{env:?}");
    // The imported base has no PATH: `$PATH` expands empty, as with Docker.
    assert!(env.contains(&"PATH=/srv/app/bin:"), "{env:?}");
    assert_eq!(c["WorkingDir"], "/srv/app/sub");
    assert_eq!(c["User"], "1000:1000");
    let ports: Vec<&String> = c["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(ports, ["53/udp", "8080/tcp", "9000/tcp", "9001/tcp"]);
    assert!(c["Volumes"]["/data"].is_object());
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000i64);
    assert_eq!(c["Healthcheck"]["Retries"], 4);
    assert_eq!(c["OnBuild"][0], "RUN echo triggered > /tmp/onbuild.txt");
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["cat /etc/motd"]));

    // The files each step made.
    assert_eq!(d.ok(&["run", "--rm", "every:1"]), "welcome to /srv/app");
    let check = |cmd: &str| d.ok(&["run", "--rm", "--user", "0", "every:1", cmd]);
    assert_eq!(check("cat /srv/app/sub/version.txt"), "version 1.0");
    assert_eq!(check("stat -c '%u:%g %a' /srv/app/sub/a.txt"), "1000:1000 640");
    assert_eq!(check("cat /copied/x /copied/deep/y"), "X\nY");
    assert_eq!(check("cat /heredoc.txt"), "heredoc-ran");
    assert_eq!(check("cat /unpacked/inner/file.txt"), "tar");
    assert_eq!(check("cat /downloads/remote.txt; stat -c %a /downloads/remote.txt"), "from the web\n600");

    // `docker history` lists every step, newest first, with the build's ids.
    let hist = d.ok(&["history", "--no-trunc", "--format", "{{.ID}}\t{{.CreatedBy}}", "every:1"]);
    let lines: Vec<&str> = hist.lines().collect();
    assert!(lines[0].contains("CMD [\"cat /etc/motd\"]"), "{hist}");
    assert!(lines.iter().any(|l| l.contains("|1 VERSION=1.0 /bin/sh -c echo")), "{hist}");
    assert!(lines.iter().any(|l| l.contains("#(nop)  WORKDIR /srv/app/sub")), "{hist}");
    assert!(!lines[1].starts_with("<missing>"), "intermediate images name their step: {hist}");

    // ONBUILD: a child image runs the trigger first.
    let child = context(&d, "child", &[("Dockerfile", "FROM every:1\nUSER 0\nRUN test -f /tmp/onbuild.txt\n")]);
    let o = build_ok(&d, &child, &["-t", "child:1"]);
    assert!(o.contains("# Executing 1 build trigger"), "{o}");
    assert_eq!(inspect(&d, "child:1")["Config"]["OnBuild"], Value::Null);
}

#[test]
fn multistage_target_and_copy_from() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let df = "FROM busybox AS builder\nRUN mkdir /out && echo built > /out/artifact\n\
              FROM busybox AS broken\nRUN exit 9\n\
              FROM busybox AS tester\nCOPY --from=builder /out/artifact /checked\n\
              FROM scratch\nCOPY --from=builder /out/ /\nCOPY --from=0 /bin/busybox /bin/busybox\nCMD [\"/bin/busybox\", \"cat\", \"/artifact\"]\n";
    let dir = context(&d, "ms", &[("Dockerfile", df)]);
    // The last stage needs only `builder`: `broken` is never run.
    let o = build_ok(&d, &dir, &["-t", "ms:final"]);
    assert!(!o.contains("exit 9"), "unneeded stage ran:\n{o}");
    assert!(o.contains("Step 1/6 : FROM busybox AS builder"), "{o}");
    assert_eq!(d.ok(&["run", "--rm", "ms:final"]), "built");
    let layers = inspect(&d, "ms:final")["RootFS"]["Layers"].as_array().unwrap().len();
    assert_eq!(layers, 2, "FROM scratch plus two COPY layers");
    // --target stops at a stage and builds only what it needs.
    let o = build_ok(&d, &dir, &["--target", "tester", "-t", "ms:tester"]);
    assert!(o.contains("Step 1/4 :"), "{o}");
    assert_eq!(d.ok(&["run", "--rm", "ms:tester", "cat", "/checked"]), "built");
    let o = build(&d, &dir, &["--target", "nosuch"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("failed to reach build target nosuch in Dockerfile"), "{}", err(&o));
}

#[test]
fn cache_hits_misses_and_prune() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let df = "FROM busybox\nRUN echo one > /one\nCOPY src /src\nRUN cat /src/file > /copy\nENV X=1\n";
    let dir = context(&d, "cache", &[("Dockerfile", df), ("src/file", "v1\n")]);
    let first = build_ok(&d, &dir, &["-t", "c:1"]);
    assert!(!first.contains("Using cache"), "{first}");
    let again = build_ok(&d, &dir, &["-t", "c:1"]);
    assert_eq!(again.matches("Using cache").count(), 4, "{again}");
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", "c:1"]).len(), 71);
    // Touching a file without changing it keeps the cache; changing it misses from COPY on.
    std::fs::write(dir.join("src/file"), "v1\n").unwrap();
    assert_eq!(build_ok(&d, &dir, &[]).matches("Using cache").count(), 4);
    std::fs::write(dir.join("src/file"), "v2\n").unwrap();
    let changed = build_ok(&d, &dir, &["-t", "c:2"]);
    assert_eq!(changed.matches("Using cache").count(), 1, "only the RUN before COPY: {changed}");
    assert_eq!(d.ok(&["run", "--rm", "c:2", "cat", "/copy"]), "v2");
    let nocache = build_ok(&d, &dir, &["--no-cache", "-t", "c:3"]);
    assert!(!nocache.contains("Using cache"), "{nocache}");
    // Intermediate images are hidden from `docker images` but listed with -a.
    let shown = d.ok(&["images", "-q"]).lines().count();
    let all = d.ok(&["images", "-a", "-q"]).lines().count();
    assert!(all > shown + 5, "images {shown}, -a {all}");
    // The cache is reported and pruned.
    let df: Value =
        serde_json::from_str(d.ok(&["system", "df", "--format", "{{json .}}"]).lines().last().unwrap()).unwrap();
    assert_eq!(df["Type"], "Build Cache");
    assert_ne!(df["TotalCount"], "0");
    // Only what was last used before `until`, and only past `keep-storage`: here, nothing.
    let count = || {
        let df: Value =
            serde_json::from_str(d.ok(&["system", "df", "--format", "{{json .}}"]).lines().last().unwrap()).unwrap();
        df["TotalCount"].as_str().unwrap().to_string()
    };
    let cached = count();
    d.ok(&["builder", "prune", "-f", "--filter", "until=24h"]);
    assert_eq!(count(), cached, "until=24h pruned fresh cache");
    d.ok(&["builder", "prune", "-f", "--keep-storage", "10GB"]);
    assert_eq!(count(), cached, "keep-storage pruned cache that fits");
    let o = d.docker(&["builder", "prune", "-f", "--filter", "label=x"]);
    assert!(err(&o).contains("invalid filter 'label'"), "{}", err(&o));
    let pruned = d.ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    let again = build_ok(&d, &dir, &["-t", "c:2"]);
    assert!(!again.contains("Using cache"), "the cache is gone after prune: {again}");
    // Removing the final image takes its untagged build parents along.
    d.ok(&["rmi", "c:1", "c:3"]);
    let deleted = d.ok(&["rmi", "c:2"]);
    assert!(deleted.matches("Deleted: sha256:").count() > 3, "{deleted}");
}

#[test]
fn dockerignore_build_args_and_labels() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let df = "FROM busybox\nARG WHO=nobody\nARG UNSET\nCOPY . /ctx/\n\
              RUN echo \"hello $WHO\" > /who && echo \"unset=[$UNSET]\" >> /who && ls /ctx > /listing\n";
    let dir = context(
        &d,
        "ign",
        &[
            ("Dockerfile", df),
            (".dockerignore", "*.secret\nlogs\n!logs/keep.log\n"),
            ("app.txt", "app"),
            ("key.secret", "s3cr3t"),
            ("logs/a.log", "a"),
            ("logs/keep.log", "k"),
        ],
    );
    let o = build_ok(
        &d,
        &dir,
        &["-t", "ign:1", "--build-arg", "WHO=berth", "--build-arg", "EXTRA=1", "--label", "team=core"],
    );
    assert!(o.contains("[Warning] One or more build-args [EXTRA] were not consumed"), "{o}");
    assert_eq!(d.ok(&["run", "--rm", "ign:1", "cat", "/who"]), "hello berth\nunset=[]");
    let listing = d.ok(&["run", "--rm", "ign:1", "cat", "/listing"]);
    assert!(!listing.contains("key.secret"), "{listing}");
    assert_eq!(d.ok(&["run", "--rm", "ign:1", "ls", "/ctx/logs"]), "keep.log");
    assert_eq!(inspect(&d, "ign:1")["Config"]["Labels"]["team"], "core");
    // The build arg is in the RUN step's history, not in the image's environment.
    let env = inspect(&d, "ign:1")["Config"]["Env"].to_string();
    assert!(!env.contains("WHO"), "{env}");
}

#[test]
fn failures_are_reported_with_the_step() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let dir = context(&d, "fail", &[("Dockerfile", "FROM busybox\nRUN echo before\nRUN exit 7\nRUN echo never\n")]);
    let o = build(&d, &dir, &["-t", "fail:1"]);
    assert_eq!(o.status.code(), Some(7), "the CLI exits with RUN's code:\n{}\n{}", out(&o), err(&o));
    assert!(err(&o).contains("The command '/bin/sh -c exit 7' returned a non-zero code: 7"), "{}", err(&o));
    assert!(!out(&o).contains("never"));
    assert!(!d.docker(&["image", "inspect", "fail:1"]).status.success(), "no image for a failed build");

    let dir = context(&d, "parse", &[("Dockerfile", "FROM busybox\n\n# comment\nRUNN echo\n")]);
    let o = build(&d, &dir, &[]);
    assert!(err(&o).contains("dockerfile parse error on line 4: unknown instruction: RUNN"), "{}", err(&o));
    let o = build(&d, &dir, &["-f", "nope/Dockerfile"]);
    assert!(!o.status.success());
    let dir = context(&d, "nobase", &[("Dockerfile", "FROM does-not-exist:1\n")]);
    let o = build(&d, &dir, &[]);
    assert!(!o.status.success());
    // Bad parameters are refused with Docker's error body.
    let sock = d.host().trim_start_matches("unix://").to_string();
    let o = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket", &sock, "-X", "POST", "--data-binary", "x"])
        .arg("http://d/v1.44/build?buildargs=%7Bnot-json")
        .bounded();
    let s = out(&o);
    assert!(s.ends_with("400") && s.contains("\"message\":\"invalid buildargs parameter"), "{s}");
}

#[test]
fn hostile_contexts_cannot_read_or_write_outside() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let dir = context(&d, "h1", &[("Dockerfile", "FROM busybox\nCOPY ../../etc/passwd /x\n")]);
    let o = build(&d, &dir, &[]);
    assert!(err(&o).contains("forbidden path outside the build context"), "{}", err(&o));

    // A symlink leaving the context resolves inside it: nothing to copy.
    let dir = context(&d, "h2", &[("Dockerfile", "FROM busybox\nCOPY link /x\n")]);
    std::os::unix::fs::symlink("/etc/shadow", dir.join("link")).unwrap();
    let o = build(&d, &dir, &[]);
    assert!(!o.status.success(), "{}", out(&o));
    assert!(err(&o).contains("file not found in build context"), "{}", err(&o));
    // Inside a copied directory a symlink stays a symlink: the host file is never read.
    let dir = context(&d, "h3", &[("Dockerfile", "FROM busybox\nCOPY d /d\n"), ("d/ok", "ok")]);
    std::os::unix::fs::symlink("/etc/shadow", dir.join("d/shadow")).unwrap();
    build_ok(&d, &dir, &["-t", "h3"]);
    assert_eq!(d.ok(&["run", "--rm", "h3", "readlink", "/d/shadow"]), "/etc/shadow");

    // A raw context tar with `..` entries and an absolute symlink: nothing lands outside.
    let canary = d.root.join("escaped");
    let mut tb = tar::Builder::new(Vec::new());
    let df = b"FROM busybox\nCOPY . /c/\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(df.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tb.append_data(&mut h, "Dockerfile", &df[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    tb.append_link(&mut h, "up", d.root.to_str().unwrap()).unwrap();
    for name in [format!("../../../../../../{}", canary.display()), "up/escaped".to_string()] {
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        tb.append(&h, &b"evil"[..]).unwrap();
    }
    let tarball = d.root.join("hostile.tar");
    std::fs::write(&tarball, tb.into_inner().unwrap()).unwrap();
    let sock = d.host().trim_start_matches("unix://").to_string();
    let o = Command::new("curl")
        .args(["-s", "--unix-socket", &sock, "-X", "POST", "-H", "Content-Type: application/x-tar", "--data-binary"])
        .arg(format!("@{}", tarball.display()))
        .arg("http://d/v1.44/build?t=hostile")
        .bounded();
    assert!(out(&o).contains("Successfully built"), "{}", out(&o));
    assert!(!canary.exists(), "a context entry escaped to {}", canary.display());
    assert_eq!(d.image_tmp_entries(), 0, "context folders are removed after the build");
}

#[test]
fn docker_py_builds() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let dir = context(
        &d,
        "py",
        &[("Dockerfile", "FROM busybox\nARG GREETING\nRUN echo $GREETING > /g\nCMD [\"cat\", \"/g\"]\n")],
    );
    let script = format!(
        r#"
import docker
c = docker.DockerClient(base_url="{host}")
img, logs = c.images.build(path="{dir}", tag="py:1", buildargs={{"GREETING": "from-python"}}, rm=True)
print("ID", img.id)
print("TAGS", img.tags)
print(c.containers.run("py:1", remove=True).decode().strip())
try:
    c.images.build(path="{dir}", dockerfile="missing.Dockerfile")
except docker.errors.APIError as e:
    print("APIERR", e.explanation)
"#,
        host = d.host(),
        dir = dir.display()
    );
    let o = Command::new("python3").arg("-c").arg(&script).bounded();
    let s = out(&o);
    assert!(o.status.success(), "{s}\n{}", err(&o));
    assert!(s.contains("TAGS ['py:1']"), "{s}");
    assert!(s.contains("from-python"), "{s}");
    assert!(s.contains("APIERR Cannot locate specified Dockerfile: missing.Dockerfile"), "{s}");
}

#[test]
fn independent_stages_run_in_parallel_with_ordered_output() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let stage = |n: &str| {
        format!("FROM busybox AS {n}\nRUN cut -d\" \" -f1 /proc/uptime > /start && sleep 1 && cut -d\" \" -f1 /proc/uptime > /end && echo {n}-done\n")
    };
    let df = format!(
        "{}{}FROM busybox\nCOPY --from=a /start /a.start\nCOPY --from=a /end /a.end\nCOPY --from=b /start /b.start\nCOPY --from=b /end /b.end\n",
        stage("a"),
        stage("b")
    );
    let dir = context(&d, "par", &[("Dockerfile", df.as_str())]);
    let o = build_ok(&d, &dir, &["-t", "par:1"]);
    // Steps appear in order even though the stages overlapped.
    let steps: Vec<usize> = o
        .lines()
        .filter_map(|l| l.strip_prefix("Step "))
        .map(|l| l.split('/').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(steps, (1..=9).collect::<Vec<_>>(), "{o}");
    assert!(o.find("a-done").unwrap() < o.find("Step 3/9").unwrap(), "{o}");
    let t = |f: &str| -> f64 { d.ok(&["run", "--rm", "par:1", "cat", f]).parse().unwrap() };
    let (a0, a1, b0, b1) = (t("/a.start"), t("/a.end"), t("/b.start"), t("/b.end"));
    assert!(a0 < b1 && b0 < a1, "stages a [{a0}, {a1}] and b [{b0}, {b1}] did not overlap");

    // A failing stage fails the build with its own error, not the stop of its sibling.
    let df = "FROM busybox AS a\nRUN sleep 1\nFROM busybox AS b\nRUN exit 3\nFROM busybox\nCOPY --from=a / /a\nCOPY --from=b / /b\n";
    let dir = context(&d, "parfail", &[("Dockerfile", df)]);
    let o = build(&d, &dir, &[]);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", out(&o), err(&o));
    assert!(err(&o).contains("returned a non-zero code: 3"), "{}", err(&o));
}

#[test]
fn cache_from_a_loaded_image() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let df = "FROM busybox\nRUN echo one > /one\nCOPY f /f\nENV A=1\nRUN cat /f > /g\n";
    let dir = context(&d, "cf", &[("Dockerfile", df), ("f", "content\n")]);
    build_ok(&d, &dir, &["-t", "cf:1"]);
    // Only the image survives (as after a `docker pull` on a CI runner): no local step cache.
    let saved = d.root.join("cf.tar");
    d.ok(&["save", "-o", saved.to_str().unwrap(), "cf:1"]);
    d.ok(&["rmi", "cf:1"]);
    d.ok(&["builder", "prune", "-f"]);
    d.ok(&["load", "-i", saved.to_str().unwrap()]);
    let o = build_ok(&d, &dir, &["--cache-from", "cf:1", "-t", "cf:2"]);
    assert_eq!(o.matches("Using cache").count(), 4, "{o}");
    assert_eq!(d.ok(&["run", "--rm", "cf:2", "cat", "/g"]), "content");
    let layers = |n: &str| inspect(&d, n)["RootFS"]["Layers"].clone();
    assert_eq!(layers("cf:1"), layers("cf:2"), "the cached steps reuse the loaded layers");
    // A changed source stops the reuse at COPY.
    std::fs::write(dir.join("f"), "other\n").unwrap();
    let o = build_ok(&d, &dir, &["--cache-from", "cf:1", "-t", "cf:3"]);
    assert_eq!(o.matches("Using cache").count(), 1, "{o}");
}

#[test]
fn a_client_that_goes_away_cancels_the_build() {
    use std::io::BufRead;
    let d = Berthd::start();
    d.import_busybox("busybox");
    let dir = context(&d, "cancel", &[("Dockerfile", "FROM busybox\nRUN echo started && sleep 60\n")]);
    let mut child = Command::new("docker")
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.root.join("docker-config"))
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("started")), "the RUN step never started");
    child.kill().unwrap();
    let _ = child.wait();
    // The RUN container is killed and removed, the context folder too.
    let gone = (0..100).any(|_| {
        let idle = d.ok(&["ps", "-aq"]).is_empty() && d.image_tmp_entries() == 0;
        if !idle {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        idle
    });
    assert!(gone, "build container or context left: {} / {}", d.ok(&["ps", "-a"]), d.image_tmp_entries());
}
