/* Config module: schema defaults, loading a full file, exact round-trip through the emitted text,
 * every error class from files and --set (with the file name and line in the message), the
 * cross-key checks and the reference table. Error messages are captured from stderr. */
#include "config.h"
#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <float.h>

static char *g_dir;
static char g_captured[16384];
static int g_saved_fd = -1;

/* Send stderr to a file until capture_end(), which returns what was written. */
static void capture_begin(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/stderr.txt", g_dir);
    fflush(stderr);
    g_saved_fd = dup(2);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (g_saved_fd < 0 || fd < 0) {
        perror("capture_begin");
        exit(2);
    }
    dup2(fd, 2);
    close(fd);
}

static const char *capture_end(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/stderr.txt", g_dir);
    fflush(stderr);
    dup2(g_saved_fd, 2);
    close(g_saved_fd);
    g_captured[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(g_captured, 1, sizeof g_captured - 1, f);
        g_captured[n] = '\0';
        fclose(f);
    }
    return g_captured;
}

static char *write_cfg(const char *name, const char *text)
{
    char *path = malloc(4200);
    snprintf(path, 4200, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
    return path;
}

/* Loading `text` from file `name` must fail with TP_ERR_CONFIG and a message holding
 * "PATH:LINE:" (line > 0) and every one of the needles. */
static void expect_file_error(const char *name, const char *text, int line, const char *needle,
                              const char *needle2)
{
    char *path = write_cfg(name, text);
    tp_config_t cfg;
    capture_begin();
    tp_status_t st = tp_config_load_file(&cfg, path);
    const char *msg = capture_end();
    char where[4300];
    if (line > 0)
        snprintf(where, sizeof where, "%s:%d: ", path, line);
    else
        snprintf(where, sizeof where, "%s: ", path);
    CHECKF(st == TP_ERR_CONFIG, "%s: status %d", name, (int)st);
    CHECKF(strstr(msg, where) != NULL, "%s: '%s' not in: %s", name, where, msg);
    CHECKF(strstr(msg, needle) != NULL, "%s: '%s' not in: %s", name, needle, msg);
    if (needle2) CHECKF(strstr(msg, needle2) != NULL, "%s: '%s' not in: %s", name, needle2, msg);
    free(path);
}

/* tp_config_set must fail, leave the config untouched and say "--set ASSIGNMENT: ...needle". */
static void expect_set_error(const char *assignment, const char *needle)
{
    tp_config_t cfg, before;
    tp_config_defaults(&cfg);
    before = cfg;
    capture_begin();
    tp_status_t st = tp_config_set(&cfg, assignment);
    const char *msg = capture_end();
    char prefix[512];
    snprintf(prefix, sizeof prefix, "--set %s: ", assignment);
    CHECKF(st == TP_ERR_CONFIG, "%s: status %d", assignment, (int)st);
    CHECKF(strstr(msg, prefix) != NULL, "'%s' not in: %s", prefix, msg);
    CHECKF(strstr(msg, needle) != NULL, "'%s' not in: %s", needle, msg);
    CHECKF(tp_config_diff(&cfg, &before) == NULL, "%s changed the config", assignment);
}

static void set_ok(tp_config_t *cfg, const char *assignment)
{
    tp_status_t st = tp_config_set(cfg, assignment);
    CHECKF(st == TP_OK, "--set %s: status %d", assignment, (int)st);
}

/* to_string -> load_string gives the same struct, field by field and byte by byte. */
static void check_round_trip(const tp_config_t *cfg, const char *what)
{
    char *text = tp_config_to_string(cfg);
    CHECK(text != NULL);
    if (!text) return;
    tp_config_t back;
    memset(&back, 0xab, sizeof back);
    tp_status_t st = tp_config_load_string(&back, text, what);
    CHECKF(st == TP_OK, "%s: reload failed (%d):\n%s", what, (int)st, text);
    const tp_config_key_t *k = tp_config_diff(cfg, &back);
    CHECKF(k == NULL, "%s: %s.%s differs after round trip:\n%s", what, k ? k->section : "",
           k ? k->key : "", text);
    CHECKF(memcmp(cfg, &back, sizeof back) == 0, "%s: bytes differ after round trip", what);
    free(text);
}

static void test_defaults(void)
{
    tp_config_t cfg;
    capture_begin();
    tp_config_defaults(&cfg);
    tp_status_t st = tp_config_validate(&cfg, "defaults");
    const char *msg = capture_end();
    CHECKF(st == TP_OK && msg[0] == '\0', "defaults are invalid: %s", msg);
    CHECK(!strcmp(cfg.model_type, "mlp"));
    CHECK(cfg.n_hidden == 2 && cfg.hidden[0] == 256 && cfg.hidden[1] == 128 && cfg.hidden[2] == 0);
    CHECK(!strcmp(cfg.activation, "relu") && cfg.dropout == 0.0);
    CHECK(cfg.n_channels == 2 && cfg.channels[0] == 32 && cfg.channels[1] == 64);
    CHECK(cfg.kernel == 3 && cfg.fc == 128);
    CHECK(!strcmp(cfg.dataset, "fashion-mnist"));
    CHECK(!strcmp(cfg.data_dir, "/usr/share/datasets/fashion-mnist"));
    CHECK(cfg.normalize && cfg.mean == 0.2860 && cfg.std == 0.3530);
    CHECK(cfg.epochs == 10 && cfg.steps == 0 && cfg.batch == 128);
    CHECK(!strcmp(cfg.optimizer, "adamw") && cfg.lr == 1e-3 && cfg.min_lr == 0.0);
    CHECK(cfg.warmup_steps == 0 && !strcmp(cfg.schedule, "cosine"));
    CHECK(cfg.momentum == 0.9 && !cfg.nesterov && cfg.beta1 == 0.9 && cfg.beta2 == 0.999);
    CHECK(cfg.eps == 1e-8 && cfg.weight_decay == 0.0 && cfg.grad_clip == 0.0 && cfg.seed == 1234);
    CHECK(cfg.eval_batch == 256 && cfg.eval_at_end);
    CHECK(!strcmp(cfg.ckpt_dir, "checkpoints") && cfg.ckpt_every == 0 && cfg.ckpt_keep == 3);
    CHECK(cfg.log_every == 50);
    CHECK(!strcmp(cfg.backend, "cpu") && cfg.threads == 0);
    CHECK(tp_config_find_key("train", "lr") != NULL);
    CHECK(tp_config_find_key("train", "lrr") == NULL);
    CHECK(tp_config_find_key("eval", "batch")->offset == offsetof(tp_config_t, eval_batch));

    /* An empty file is all defaults. */
    tp_config_t empty;
    char *path = write_cfg("empty.cfg", "# nothing\n");
    CHECK(tp_config_load_file(&empty, path) == TP_OK);
    CHECK(tp_config_diff(&cfg, &empty) == NULL);
    free(path);
}

static const char *full_text =
    "# every key, none at its default\n"
    "model = {\n"
    "  type = \"cnn\"; hidden = [512, 256, 64]; activation = \"gelu\"; dropout = 0.25;\n"
    "  channels = [16, 48]; kernel = 5; fc = 96;\n"
    "};\n"
    "data = { dataset = \"fashion-mnist\"; dir = \"/data/fm\"; normalize = false;\n"
    "  mean = 0.5; std = 2; };\n"
    "train = {\n"
    "  epochs = 3; steps = 700; batch = 256; optimizer = \"sgd\"; lr = 0.05; min_lr = 1e-4;\n"
    "  warmup_steps = 100; schedule = \"constant\"; momentum = 0.8; nesterov = true;\n"
    "  beta1 = 0.85; beta2 = 0.99; eps = 1e-6; weight_decay = 0.01; grad_clip = 1.0;\n"
    "  seed = 5000000000L;\n"
    "};\n"
    "eval = { batch = 500; at_end = false; };\n"
    "checkpoint = { dir = \"ck\"; every = 200; keep = 5; };\n"
    "log = { every = 10; };\n"
    "runtime = { backend = \"ref\"; threads = 4; };\n";

static void test_full_file(tp_config_t *cfg)
{
    char *path = write_cfg("full.cfg", full_text);
    tp_status_t st = tp_config_load_file(cfg, path);
    CHECK(st == TP_OK);
    CHECK(!strcmp(cfg->model_type, "cnn"));
    CHECK(cfg->n_hidden == 3 && cfg->hidden[0] == 512 && cfg->hidden[2] == 64);
    CHECK(!strcmp(cfg->activation, "gelu") && cfg->dropout == 0.25);
    CHECK(cfg->n_channels == 2 && cfg->channels[0] == 16 && cfg->channels[1] == 48);
    CHECK(cfg->kernel == 5 && cfg->fc == 96);
    CHECK(!strcmp(cfg->data_dir, "/data/fm") && !cfg->normalize);
    CHECK(cfg->mean == 0.5 && cfg->std == 2.0); /* an int where a float is expected */
    CHECK(cfg->epochs == 3 && cfg->steps == 700 && cfg->batch == 256);
    CHECK(!strcmp(cfg->optimizer, "sgd") && cfg->lr == 0.05 && cfg->min_lr == 1e-4);
    CHECK(cfg->warmup_steps == 100 && !strcmp(cfg->schedule, "constant"));
    CHECK(cfg->momentum == 0.8 && cfg->nesterov && cfg->beta1 == 0.85 && cfg->beta2 == 0.99);
    CHECK(cfg->eps == 1e-6 && cfg->weight_decay == 0.01 && cfg->grad_clip == 1.0);
    CHECK(cfg->seed == 5000000000LL);
    CHECK(cfg->eval_batch == 500 && !cfg->eval_at_end);
    CHECK(!strcmp(cfg->ckpt_dir, "ck") && cfg->ckpt_every == 200 && cfg->ckpt_keep == 5);
    CHECK(cfg->log_every == 10 && !strcmp(cfg->backend, "ref") && cfg->threads == 4);
    free(path);
}

static void test_round_trip(const tp_config_t *full)
{
    tp_config_t cfg;
    tp_config_defaults(&cfg);
    check_round_trip(&cfg, "defaults");
    check_round_trip(full, "full");

    /* Floats that need all 17 digits, integral floats (must still read back as floats), a seed
     * beyond 32 bits and a path that needs escaping. */
    set_ok(&cfg, "data.mean=0.30000000000000004");
    set_ok(&cfg, "data.std=3");
    set_ok(&cfg, "train.lr=0.1");
    set_ok(&cfg, "train.min_lr=1e-300");
    set_ok(&cfg, "train.seed=9223372036854775807");
    set_ok(&cfg, "train.grad_clip=1e22");
    set_ok(&cfg, "data.dir=/tmp/a \"quoted\" back\\slash\ttab/caf\xc3\xa9");
    check_round_trip(&cfg, "tricky");
    char *text = tp_config_to_string(&cfg);
    CHECKF(strstr(text, "std = 3.0;") && strstr(text, "dropout = 0.0;"), "%s", text);
    CHECKF(strstr(text, "seed = 9223372036854775807L;"), "%s", text);
    free(text);

    tp_rng_t r;
    tp_rng_seed(&r, 42, 1);
    for (int i = 0; i < 200; i++) {
        uint64_t bits = tp_rng_next(&r);
        double x;
        memcpy(&x, &bits, sizeof x);
        if (!isfinite(x)) continue;
        cfg.mean = x;
        cfg.weight_decay = fabs(x);
        cfg.lr = 10 * tp_rng_uniform(&r) + DBL_MIN;
        cfg.min_lr = cfg.lr * tp_rng_uniform(&r);
        check_round_trip(&cfg, "random floats");
    }
}

static void test_file_errors(void)
{
    expect_file_error("parse.cfg", "train = {\n  lr = 0.1;\n  epochs = ;\n};\n", 3, "syntax error",
                      NULL);
    expect_file_error("dup.cfg", "train = {\n  lr = 0.1;\n  lr = 0.2;\n};\n", 3, "duplicate", NULL);
    expect_file_error("section.cfg", "model = { };\n\ntrian = { lr = 0.1; };\n", 3,
                      "unknown section 'trian'", "did you mean 'train'?");
    expect_file_error("notgroup.cfg", "train = 3;\n", 1, "train: expected a group", NULL);
    expect_file_error("key.cfg", "train = {\n  epochs = 2;\n  lrr = 0.1;\n};\n", 3,
                      "unknown key 'train.lrr'", "did you mean 'train.lr'?");
    expect_file_error("key2.cfg", "model = {\n  lr = 0.1;\n};\n", 2, "unknown key 'model.lr'",
                      "did you mean 'train.lr'?");
    expect_file_error("type1.cfg", "train = {\n  lr = \"0.1\";\n};\n", 2,
                      "train.lr: expected a number, got a string", NULL);
    expect_file_error("type2.cfg", "train = {\n  epochs = 2.0;\n};\n", 2,
                      "train.epochs: expected an integer, got a float", NULL);
    expect_file_error("type3.cfg", "data = {\n  normalize = 1;\n};\n", 2,
                      "data.normalize: expected a boolean", "got an integer");
    expect_file_error("type4.cfg", "model = {\n  type = mlp;\n};\n", 2, "syntax error", NULL);
    expect_file_error("type5.cfg", "model = {\n  activation = 1;\n};\n", 2,
                      "model.activation: expected a string, got an integer", NULL);
    expect_file_error("type6.cfg", "model = {\n  hidden = 256;\n};\n", 2,
                      "model.hidden: expected a list of integers", "got an integer");
    expect_file_error("range1.cfg", "train = {\n  lr = 20;\n};\n", 2,
                      "train.lr: 20 is out of range (0, 10]", NULL);
    expect_file_error("range2.cfg", "train = {\n  batch = 0;\n};\n", 2,
                      "train.batch: 0 is out of range [1, 1048576]", NULL);
    expect_file_error("range3.cfg", "train = {\n  beta2 = 1.0;\n};\n", 2,
                      "train.beta2: 1 is out of range [0, 1)", NULL);
    expect_file_error("range4.cfg", "runtime = {\n  threads = 5000L;\n};\n", 2,
                      "runtime.threads: 5000 is out of range [0, 1024]", NULL);
    expect_file_error("range5.cfg", "data = {\n  std = 0;\n};\n", 2,
                      "data.std: 0 is out of range (0, inf)", NULL);
    expect_file_error("choice.cfg", "model = {\n  type = \"foo\";\n};\n", 2,
                      "model.type: 'foo' is not one of mlp, cnn", NULL);
    expect_file_error("empty.cfg", "checkpoint = {\n  dir = \"\";\n};\n", 2,
                      "checkpoint.dir: must not be empty", NULL);
    expect_file_error("arr1.cfg", "model = {\n  hidden = [];\n};\n", 2,
                      "model.hidden: 0 entries; expected 1 to 8", NULL);
    expect_file_error("arr2.cfg", "model = {\n  hidden = [1, 2, 3, 4, 5, 6, 7, 8, 9];\n};\n", 2,
                      "model.hidden: 9 entries; expected 1 to 8", NULL);
    expect_file_error("arr3.cfg", "model = {\n  hidden = [256, 0];\n};\n", 2,
                      "model.hidden: entry 2: 0 is out of range [1, 65536]", NULL);
    expect_file_error("arr4.cfg", "model = {\n  hidden = (256, 1.5);\n};\n", 2,
                      "model.hidden: expected a list of integers", "got a float as entry 2");
    expect_file_error("arr5.cfg", "model = {\n  channels = [256, 5000];\n};\n", 2,
                      "model.channels: entry 2: 5000 is out of range [1, 4096]", NULL);
    expect_file_error("odd.cfg", "model = {\n  kernel = 4;\n};\n", 2, "model.kernel: 4 must be odd",
                      NULL);
    /* Cross-key checks name the file (no single line: they span keys). */
    expect_file_error("minlr.cfg", "train = { lr = 0.01; min_lr = 0.1; };\n", 0,
                      "train.min_lr (0.1) must not exceed train.lr (0.01)", NULL);
    expect_file_error("cnn.cfg", "model = { type = \"cnn\"; channels = [8, 16, 32]; };\n", 0,
                      "model.channels", "exactly 2 entries, got 3");
    expect_file_error("nosteps.cfg", "train = { epochs = 0; steps = 0; };\n", 0,
                      "train: set epochs or steps", NULL);

    /* Every error in a file is reported, each with its own line. */
    char *path = write_cfg("many.cfg", "train = {\n  lr = 20;\n  batch = 0;\n};\n");
    tp_config_t cfg;
    capture_begin();
    tp_status_t st = tp_config_load_file(&cfg, path);
    const char *msg = capture_end();
    char l2[4300], l3[4300];
    snprintf(l2, sizeof l2, "%s:2: train.lr", path);
    snprintf(l3, sizeof l3, "%s:3: train.batch", path);
    CHECK(st == TP_ERR_CONFIG);
    CHECKF(strstr(msg, l2) && strstr(msg, l3), "%s", msg);
    free(path);

    /* A missing file says why, via strerror. */
    capture_begin();
    st = tp_config_load_file(&cfg, "/nonexistent/tulpar.cfg");
    msg = capture_end();
    CHECK(st == TP_ERR_CONFIG);
    CHECKF(strstr(msg, "/nonexistent/tulpar.cfg") && strstr(msg, "No such file"), "%s", msg);

    /* load_string names its origin. */
    capture_begin();
    st = tp_config_load_string(&cfg, "log = {\n every = 0;\n};\n", "ckpt-000100.h5:/config");
    msg = capture_end();
    CHECK(st == TP_ERR_CONFIG);
    CHECKF(strstr(msg, "ckpt-000100.h5:/config:2: log.every: 0 is out of range [1, inf)"), "%s",
           msg);

    /* libconfig 1.5 would silently wrap these to 32 bits. */
    expect_file_error("wrap1.cfg", "train = {\n  epochs = 2; seed = 5000000000;\n};\n", 2,
                      "train.seed: 5000000000 does not fit in 32 bits", "5000000000L");
    expect_file_error("wrap2.cfg", "train = {\n  steps:99999999999999999999\n};\n", 2,
                      "train.steps: integer does not fit in 64 bits", NULL);
    expect_file_error("wrap3.cfg", "train = {\n  batch = 4294967424;\n};\n", 2,
                      "train.batch: 4294967424 does not fit in 32 bits", NULL);
    capture_begin();
    st =
        tp_config_load_string(&cfg, "train = { seed = 0x10; steps =\n 70;\n batch = -0; };", "hex");
    msg = capture_end();
    CHECKF(st == TP_ERR_CONFIG && strstr(msg, "hex:3: train.batch: 0 is out of range"), "%s", msg);
    CHECK(tp_config_load_string(&cfg, "train = { seed = 0x10; steps =\n 70;\n batch = 12; };",
                                "hex") == TP_OK);
    CHECK(cfg.seed == 16 && cfg.steps == 70 && cfg.batch == 12);

    /* int64 values are fine wherever an integer or a float is expected. */
    tp_config_t ok;
    CHECK(tp_config_load_string(&ok, "train = { steps = 1L; lr = 1L; };", "int64") == TP_OK);
    CHECK(ok.steps == 1 && ok.lr == 1.0);
}

static void test_set(void)
{
    tp_config_t cfg;
    tp_config_defaults(&cfg);
    set_ok(&cfg, "train.epochs=7");
    set_ok(&cfg, " train.steps = -0 ");
    set_ok(&cfg, "train.lr=2e-2");
    set_ok(&cfg, "train.min_lr=0");
    set_ok(&cfg, "data.std=1");
    set_ok(&cfg, "train.nesterov=yes");
    set_ok(&cfg, "data.normalize=0");
    set_ok(&cfg, "eval.at_end=FALSE");
    set_ok(&cfg, "model.activation=gelu");
    set_ok(&cfg, "data.dir=\"/a b/c\"");
    set_ok(&cfg, "checkpoint.dir=runs/x=y");
    set_ok(&cfg, "model.hidden=[64, 32, 16]");
    set_ok(&cfg, "model.channels=8,24");
    CHECK(cfg.epochs == 7 && cfg.steps == 0 && cfg.lr == 0.02 && cfg.min_lr == 0 && cfg.std == 1);
    CHECK(cfg.nesterov && !cfg.normalize && !cfg.eval_at_end && !strcmp(cfg.activation, "gelu"));
    CHECK(!strcmp(cfg.data_dir, "/a b/c") && !strcmp(cfg.ckpt_dir, "runs/x=y"));
    CHECK(cfg.n_hidden == 3 && cfg.hidden[0] == 64 && cfg.hidden[2] == 16);
    CHECK(cfg.n_channels == 2 && cfg.channels[0] == 8 && cfg.channels[1] == 24);
    set_ok(&cfg, "model.hidden=100");
    CHECK(cfg.n_hidden == 1 && cfg.hidden[0] == 100 && cfg.hidden[1] == 0);
    CHECK(tp_config_validate(&cfg, "--set") == TP_OK);

    expect_set_error("train.lr", "expected section.key=value");
    expect_set_error("", "expected section.key=value");
    expect_set_error("train.lrr=1", "unknown key 'train.lrr'; did you mean 'train.lr'?");
    expect_set_error("lr=1", "unknown key 'lr'; did you mean 'train.lr'?");
    expect_set_error("bogus.thing=1", "unknown key 'bogus.thing'");
    expect_set_error("train.epochs=12abc", "expected an integer");
    expect_set_error("train.epochs=1.5", "expected an integer");
    expect_set_error("train.epochs=", "expected an integer");
    expect_set_error("train.steps=99999999999999999999", "does not fit in 64 bits");
    expect_set_error("train.epochs=100001", "100001 is out of range [0, 100000]");
    expect_set_error("train.lr=abc", "expected a number");
    expect_set_error("train.lr=0.1x", "expected a number");
    expect_set_error("train.lr=inf", "expected a finite number");
    expect_set_error("train.lr=1e999", "expected a finite number");
    expect_set_error("train.lr=20", "20 is out of range (0, 10]");
    expect_set_error("train.lr=0", "0 is out of range (0, 10]");
    expect_set_error("train.momentum=1", "1 is out of range [0, 1)");
    expect_set_error("train.nesterov=maybe", "expected a boolean");
    expect_set_error("model.type=foo", "'foo' is not one of mlp, cnn");
    expect_set_error("runtime.backend=\"gpu\"", "'gpu' is not one of cpu, ref, cuda");
    expect_set_error("data.dir=", "must not be empty");
    expect_set_error("model.hidden=[256,128", "expected a list of integers");
    expect_set_error("model.hidden=256,,128", "expected a list of integers");
    expect_set_error("model.hidden=256,", "expected a list of integers");
    expect_set_error("model.hidden=[256,1.5]", "expected a list of integers");
    expect_set_error("model.hidden=[]", "0 entries; expected 1 to 8");
    expect_set_error("model.hidden=1,2,3,4,5,6,7,8,9", "9 entries; expected 1 to 8");
    expect_set_error("model.hidden=[256, 0]", "entry 2: 0 is out of range [1, 65536]");
    expect_set_error("model.kernel=6", "6 must be odd");

    /* Cross-key problems made by overrides are caught by tp_config_validate. */
    tp_config_t v;
    tp_config_defaults(&v);
    set_ok(&v, "model.type=cnn");
    CHECK(tp_config_validate(&v, "--set") == TP_OK);
    set_ok(&v, "model.channels=[4]");
    set_ok(&v, "train.min_lr=0.5");
    set_ok(&v, "train.epochs=0");
    capture_begin();
    tp_status_t st = tp_config_validate(&v, "run.cfg");
    const char *msg = capture_end();
    CHECK(st == TP_ERR_CONFIG);
    CHECKF(strstr(msg, "run.cfg: model.channels") && strstr(msg, "run.cfg: train.min_lr") &&
               strstr(msg, "run.cfg: train: set epochs or steps"),
           "%s", msg);

    /* A struct damaged by hand is caught too (validate re-checks every key). */
    tp_config_defaults(&v);
    v.kernel = 2;
    v.n_hidden = 9;
    capture_begin();
    st = tp_config_validate(&v, "damaged");
    msg = capture_end();
    CHECK(st == TP_ERR_CONFIG);
    CHECKF(strstr(msg, "damaged: model.kernel: 2 must be odd") &&
               strstr(msg, "damaged: model.hidden: 9 entries"),
           "%s", msg);
}

static void test_reference(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    if (!f) return;
    tp_config_write_reference(f);
    fclose(f);
    CHECK(strncmp(buf, "| key | type | default | allowed | meaning |\n", 45) == 0);
    int rows = 0;
    for (const char *p = buf; (p = strchr(p, '\n')); p++)
        rows++;
    CHECKF(rows == tp_config_schema_len + 2, "%d rows for %d keys", rows, tp_config_schema_len);
    CHECKF(strstr(buf, "| `train.lr` | float | `0.001` | (0, 10] |"), "%s", buf);
    CHECKF(strstr(buf, "| `model.hidden` | list of int | `[256, 128]` |"), "%s", buf);
    free(buf);
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(g_dir);
    if (!d) return;
    char path[4600];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(g_dir);
}

int main(void)
{
    g_dir = tp_test_tmpdir("config");
    tp_config_t full;
    test_defaults();
    test_full_file(&full);
    test_round_trip(&full);
    test_file_errors();
    test_set();
    test_reference();
    remove_tmpdir();
    free(g_dir);
    return tp_test_finish("test_config");
}
