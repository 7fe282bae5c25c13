use super::*;

fn one(text: &str) -> Kind {
    let df = parse(&format!("FROM scratch\n{text}")).unwrap();
    df.stages[0].instructions[0].kind.clone()
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn stages_and_meta_args() {
    let df = parse(
        "ARG BASE=busybox\nARG V\nFROM --platform=linux/amd64 ${BASE}:${V:-1} AS Build\nRUN make\n\
         from build as final\nCOPY --from=build /out /out\n",
    )
    .unwrap();
    assert_eq!(df.meta_args.len(), 2);
    assert_eq!(df.meta_args[0], ArgDecl { name: "BASE".into(), default: Some("busybox".into()) });
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.stages[0].name.as_deref(), Some("build"));
    assert_eq!(df.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(df.stages[0].base, "${BASE}:${V:-1}");
    assert_eq!(df.stages[1].base, "build");
    assert_eq!(df.stage_index("BUILD"), Some(0));
    assert_eq!(df.stage_index("1"), Some(1));
    assert_eq!(df.stage_index("2"), None);
    assert_eq!(df.stages[1].instructions[0].flag("from"), Some("build"));
}

#[test]
fn json_and_shell_forms() {
    assert_eq!(one("CMD [\"a\", \"b c\"]"), Kind::Cmd(Command::Exec(vec!["a".into(), "b c".into()])));
    assert_eq!(one("CMD echo [x]"), Kind::Cmd(Command::Shell("echo [x]".into())));
    // Not an array of strings: the shell form, as BuildKit falls back.
    assert_eq!(one("CMD [\"a\", 1]"), Kind::Cmd(Command::Shell("[\"a\", 1]".into())));
    assert_eq!(one("ENTRYPOINT []"), Kind::Entrypoint(Command::Exec(vec![])));
    assert_eq!(one("SHELL [\"/bin/sh\", \"-ec\"]"), Kind::Shell(vec!["/bin/sh".into(), "-ec".into()]));
    assert!(err("FROM a\nSHELL /bin/sh -c").contains("SHELL requires the arguments to be in JSON form"));
}

#[test]
fn env_label_arg() {
    assert_eq!(
        one("ENV A=1 B=\"two words\" C=x\\ y"),
        Kind::Env(vec![("A".into(), "1".into()), ("B".into(), "\"two words\"".into()), ("C".into(), "x\\ y".into())])
    );
    assert_eq!(one("ENV LEGACY value with  spaces"), Kind::Env(vec![("LEGACY".into(), "value with  spaces".into())]));
    assert_eq!(one("LABEL \"com.x\"=\"y\""), Kind::Label(vec![("\"com.x\"".into(), "\"y\"".into())]));
    assert!(err("FROM a\nENV A=1 B").contains("can't find = in \"B\""));
    assert!(err("FROM a\nENV A").contains("ENV must have two arguments"));
    assert_eq!(
        one("ARG A B=2"),
        Kind::Arg(vec![
            ArgDecl { name: "A".into(), default: None },
            ArgDecl { name: "B".into(), default: Some("2".into()) }
        ])
    );
}

#[test]
fn copy_add_forms() {
    let Kind::Copy(c) = one("COPY a b* /dst/") else { panic!() };
    assert_eq!(c.sources, vec!["a", "b*"]);
    assert_eq!(c.dest, "/dst/");
    let Kind::Add(c) = one("ADD [\"a b\", \"/d\"]") else { panic!() };
    assert!(c.json);
    assert_eq!(c.sources, vec!["a b"]);
    let Kind::Copy(c) = one("COPY <<EOF /etc/motd\nhello $USER\nEOF") else { panic!() };
    assert_eq!(c.sources, vec!["<<EOF"]);
    assert_eq!(c.heredocs[0].content, "hello $USER\n");
    assert!(err("FROM a\nCOPY onlyone").contains("requires at least two arguments"));
    assert!(err("FROM a\nCOPY --chmown=1 a b").contains("unknown flag: chmown"));
}

#[test]
fn run_heredoc_and_flags() {
    let df =
        parse("FROM a\nRUN --mount=type=cache,target=/c --network=none <<EOF\nset -e\necho hi\nEOF\nRUN true").unwrap();
    let ins = &df.stages[0].instructions[0];
    assert_eq!(ins.flag("network"), Some("none"));
    let Kind::Run { cmd, heredocs } = &ins.kind else { panic!() };
    assert_eq!(cmd, &Command::Shell("<<EOF".into()));
    assert_eq!(heredocs[0].content, "set -e\necho hi\n");
    assert_eq!(df.stages[0].instructions[1].line, 6);
}

#[test]
fn healthcheck_onbuild_misc() {
    assert_eq!(one("HEALTHCHECK NONE"), Kind::Healthcheck(None));
    let Kind::Healthcheck(Some(h)) = one("HEALTHCHECK --interval=5s --retries=3 CMD [\"true\"]") else { panic!() };
    assert_eq!(h.test, Command::Exec(vec!["true".into()]));
    assert_eq!(h.flags.len(), 2);
    assert!(err("FROM a\nHEALTHCHECK FOO").contains("Unknown type \"FOO\""));
    assert_eq!(one("ONBUILD RUN echo x"), Kind::Onbuild("RUN echo x".into()));
    assert!(err("FROM a\nONBUILD ONBUILD RUN x").contains("Chaining ONBUILD"));
    assert!(err("FROM a\nONBUILD FROM x").contains("isn't allowed as an ONBUILD trigger"));
    assert!(err("FROM a\nONBUILD RUNN x").contains("unknown instruction: RUNN"));
    assert_eq!(one("EXPOSE 80 443/udp"), Kind::Expose(vec!["80".into(), "443/udp".into()]));
    assert_eq!(one("VOLUME /a /b"), Kind::Volume { paths: vec!["/a".into(), "/b".into()], json: false });
    assert_eq!(one("VOLUME [\"/a b\"]"), Kind::Volume { paths: vec!["/a b".into()], json: true });
    assert_eq!(one("stopsignal SIGKILL"), Kind::Stopsignal("SIGKILL".into()));
    assert_eq!(one("MAINTAINER Jane <j@x>"), Kind::Maintainer("Jane <j@x>".into()));
}

#[test]
fn errors_name_the_line() {
    assert_eq!(
        err("FROM a\n\n# c\nRUN true\n\n\nRUNN x"),
        "dockerfile parse error on line 7: unknown instruction: RUNN"
    );
    assert!(err("RUN x").contains("no build stage in current context"));
    assert!(err("# only a comment\n").contains("cannot be empty"));
    assert!(err("FROM a b").contains("FROM requires either one or three arguments"));
    assert!(err("FROM a AS 1x").contains("invalid name for build stage"));
    assert!(err("FROM a AS x\nFROM b AS X").contains("duplicate stage name"));
    assert!(err("# escape=x\nFROM a").contains("invalid escape token"));
    assert!(err("FROM a\nRUN").contains("RUN requires at least one argument"));
}

#[test]
fn windows_escape_and_crlf() {
    let df = parse("# escape=`\r\nFROM a\r\nRUN dir c:\\ `\r\n  && echo x\r\nWORKDIR C:\\work\r\n").unwrap();
    let Kind::Run { cmd: Command::Shell(s), .. } = &df.stages[0].instructions[0].kind else { panic!() };
    assert_eq!(s, "dir c:\\   && echo x");
    assert_eq!(df.stages[0].instructions[1].kind, Kind::Workdir("C:\\work".into()));
}

#[test]
fn original_text_for_steps() {
    let df = parse("FROM a\nRUN echo a \\\n    && echo b\n").unwrap();
    assert_eq!(df.stages[0].instructions[0].original, "RUN echo a     && echo b");
    assert_eq!(df.stages[0].original, "FROM a");
}
