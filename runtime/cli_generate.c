/* `tulpar generate`: text from a GPT checkpoint, streamed token by token with a KV cache; or
 * many prompts from a file spread over the ranks, with the aggregate tokens/s. The model's
 * config comes from the checkpoint itself. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "cli.h"
#include "generate.h"
#include "json_writer.h"
#include "train_state.h"

typedef struct gen_opts {
    const char *checkpoint, *prompt, *prompts, *output;
    int64_t max_tokens, top_k;
    double temperature;
    uint64_t seed;
    const char *sets[TP_CLI_MAX_SETS];
    int n_sets;
} gen_opts_t;

static tp_status_t parse_num(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end = NULL;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi))
        return tp_cli_usage_error("generate", "%s needs a number in [%g, %g], got '%s'", opt, lo,
                                  hi, v);
    *out = x;
    return TP_OK;
}

static tp_status_t parse(int argc, char **argv, gen_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->max_tokens = 200;
    o->top_k = 40;
    o->temperature = 0.8;
    o->seed = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        double x = 0;
        if (tp_cli_is(a, "--checkpoint")) {
            if (!(o->checkpoint = tp_cli_value(argc, argv, &i, "--checkpoint")))
                return TP_ERR_USAGE;
        } else if (tp_cli_is(a, "--prompt")) {
            if (!(o->prompt = tp_cli_value(argc, argv, &i, "--prompt"))) return TP_ERR_USAGE;
        } else if (tp_cli_is(a, "--prompts")) {
            if (!(o->prompts = tp_cli_value(argc, argv, &i, "--prompts"))) return TP_ERR_USAGE;
        } else if (tp_cli_is(a, "--output")) {
            if (!(o->output = tp_cli_value(argc, argv, &i, "--output"))) return TP_ERR_USAGE;
        } else if (tp_cli_is(a, "--max-tokens")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--max-tokens"))) return TP_ERR_USAGE;
            TP_TRY(parse_num("--max-tokens", v, 1, 1e6, &x));
            o->max_tokens = (int64_t)x;
        } else if (tp_cli_is(a, "--temperature")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--temperature"))) return TP_ERR_USAGE;
            TP_TRY(parse_num("--temperature", v, 0, 100, &o->temperature));
        } else if (tp_cli_is(a, "--top-k")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--top-k"))) return TP_ERR_USAGE;
            TP_TRY(parse_num("--top-k", v, 0, 1e7, &x));
            o->top_k = (int64_t)x;
        } else if (tp_cli_is(a, "--seed")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--seed"))) return TP_ERR_USAGE;
            TP_TRY(parse_num("--seed", v, 0, 9007199254740992.0, &x));
            o->seed = (uint64_t)x;
        } else if (tp_cli_is(a, "--set")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--set"))) return TP_ERR_USAGE;
            if (o->n_sets == TP_CLI_MAX_SETS)
                return tp_cli_usage_error("generate", "too many --set");
            o->sets[o->n_sets++] = v;
        } else {
            return tp_cli_usage_error("generate", "unknown argument '%s'", a);
        }
    }
    if (!o->checkpoint) return tp_cli_usage_error("generate", "missing --checkpoint PATH");
    if (!o->prompt == !o->prompts)
        return tp_cli_usage_error("generate",
                                  "give exactly one of --prompt TEXT or --prompts FILE");
    return TP_OK;
}

/* Config from the checkpoint, then --set overrides (e.g. runtime.backend). */
static tp_status_t load_model(tp_runtime_t *rt, const gen_opts_t *o, tp_config_t *cfg,
                              tp_model_t **m, tp_train_state_t **state)
{
    tp_ckpt_t *ck = NULL;
    tp_status_t st = tp_ckpt_open(o->checkpoint, &ck);
    if (st == TP_OK) {
        char origin[4200];
        snprintf(origin, sizeof origin, "%s:/config", o->checkpoint);
        tp_log_mute(rt->rank != 0);
        st = tp_config_load_string(cfg, tp_ckpt_config_text(ck), origin);
        for (int i = 0; st == TP_OK && i < o->n_sets; i++)
            st = tp_config_set(cfg, o->sets[i]);
        if (st == TP_OK) st = tp_config_validate(cfg, origin);
        tp_log_mute(0);
        tp_ckpt_close(ck);
    }
    TP_TRY(tp_comm_agree(rt->comm, st));
    if (strcmp(cfg->model_type, "gpt") != 0 || cfg->vocab_size != 256)
        return TP_ERR(TP_ERR_USAGE,
                      "%s holds a '%s' model with vocabulary %lld: tulpar generate needs a "
                      "byte-level gpt (vocab_size 256)",
                      o->checkpoint, cfg->model_type, (long long)cfg->vocab_size);
    TP_TRY(tp_comm_agree(rt->comm, tp_runtime_open_backend(rt, cfg)));
    st = tp_model_create(cfg, rt->be, 1, 1, 1, 0, 1, 1, m);
    if (st == TP_OK) st = tp_train_state_create(*m, NULL, state);
    TP_TRY(tp_comm_agree(rt->comm, st));
    tp_ckpt_meta_t meta;
    return tp_comm_agree(rt->comm, tp_train_state_load(*state, o->checkpoint, &meta));
}

static void stream_byte(int32_t token, void *arg)
{
    (void)arg;
    fputc(token & 0xff, stdout);
    fflush(stdout);
}

static tp_status_t to_tokens(const char *text, int32_t **out, int64_t *n)
{
    *n = (int64_t)strlen(text);
    *out = tp_malloc((size_t)(*n ? *n : 1) * sizeof(int32_t), "prompt");
    if (!*out) return TP_ERR_NOMEM;
    for (int64_t i = 0; i < *n; i++)
        (*out)[i] = (unsigned char)text[i];
    return TP_OK;
}

static tp_status_t one_prompt(tp_runtime_t *rt, tp_model_t *m, const gen_opts_t *o,
                              const tp_sampling_t *s)
{
    if (rt->rank != 0) return TP_OK; /* one prompt: rank 0 answers */
    int32_t *p = NULL, *out = tp_malloc((size_t)o->max_tokens * sizeof(int32_t), "output");
    int64_t n = 0;
    tp_status_t st = out ? to_tokens(o->prompt, &p, &n) : TP_ERR_NOMEM;
    if (st == TP_OK && n == 0) st = tp_cli_usage_error("generate", "--prompt is empty");
    double t0 = tp_now();
    if (st == TP_OK) {
        fputs(o->prompt, stdout);
        st = tp_generate(m, p, n, o->max_tokens, s, out, stream_byte, NULL);
        double dt = tp_now() - t0;
        fprintf(stdout, "\n");
        fprintf(stderr, "generate: %lld tokens in %.3f s: %.1f tokens/s (KV cache)\n",
                (long long)o->max_tokens, dt, (double)o->max_tokens / dt);
    }
    free(p);
    free(out);
    return st;
}

/* Prompts of a file, one per line, prompt i on rank i % ranks; results summed into one table
 * (each row written by exactly one rank) and printed by rank 0 in order. */
static tp_status_t many_prompts(tp_runtime_t *rt, tp_model_t *m, const gen_opts_t *o,
                                const tp_sampling_t *s)
{
    char *text = NULL;
    size_t len = 0;
    TP_TRY(tp_comm_agree(rt->comm, tp_read_file(o->prompts, &text, &len)));
    int64_t n_prompts = 0;
    char **lines = tp_malloc((len + 1) * sizeof(char *), "prompt lines");
    for (char *line = strtok(lines ? text : NULL, "\n"); line; line = strtok(NULL, "\n"))
        if (*line) lines[n_prompts++] = line;
    tp_status_t st = lines ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK && n_prompts == 0)
        st = TP_ERR(TP_ERR_DATA, "%s: no prompts (one per non-empty line)", o->prompts);
    int64_t K = o->max_tokens;
    double *table =
        st == TP_OK ? tp_calloc((size_t)(n_prompts * K + 1), sizeof(double), "results") : NULL;
    if (st == TP_OK && !table) st = TP_ERR_NOMEM;
    st = tp_comm_agree(rt->comm, st);
    double t0 = tp_now();
    int32_t *out = st == TP_OK ? tp_malloc((size_t)K * sizeof(int32_t), "output") : NULL;
    for (int64_t i = rt->rank; st == TP_OK && i < n_prompts; i += rt->world_size) {
        int32_t *p = NULL;
        int64_t n = 0;
        st = out ? to_tokens(lines[i], &p, &n) : TP_ERR_NOMEM;
        if (st == TP_OK) st = tp_generate(m, p, n, K, s, out, NULL, NULL);
        for (int64_t k = 0; st == TP_OK && k < K; k++)
            table[i * K + k] = out[k];
        free(p);
    }
    double mine = tp_now() - t0;
    st = tp_comm_agree(rt->comm, st);
    if (st == TP_OK)
        st = tp_comm_allreduce(rt->comm, table, (size_t)(n_prompts * K), TP_DT_DOUBLE, TP_RED_SUM);
    if (st == TP_OK) st = tp_comm_allreduce(rt->comm, &mine, 1, TP_DT_DOUBLE, TP_RED_MAX);
    if (st == TP_OK && rt->rank == 0) {
        FILE *f = o->output ? fopen(o->output, "w") : stdout;
        if (!f) st = TP_ERR(TP_ERR_IO, "cannot write %s: %s", o->output, strerror(errno));
        for (int64_t i = 0; st == TP_OK && i < n_prompts; i++) {
            char *completion = tp_malloc((size_t)K + 1, "completion");
            if (!completion) {
                st = TP_ERR_NOMEM;
                break;
            }
            for (int64_t k = 0; k < K; k++)
                completion[k] = (char)(int)table[i * K + k];
            completion[K] = '\0';
            tp_json_t j;
            tp_json_init(&j, f, false);
            tp_json_object_begin(&j, NULL);
            tp_json_int(&j, "index", i);
            tp_json_str(&j, "prompt", lines[i]);
            tp_json_str(&j, "completion", completion);
            tp_json_object_end(&j);
            fputc('\n', f);
            free(completion);
        }
        if (f && f != stdout) fclose(f);
        fprintf(stderr,
                "generate: %lld prompts x %lld tokens on %d rank(s) in %.3f s: %.1f tokens/s\n",
                (long long)n_prompts, (long long)K, rt->world_size, mine,
                (double)(n_prompts * K) / mine);
    }
    free(out);
    free(table);
    free(lines);
    free(text);
    return st;
}

static int run_generate(tp_runtime_t *rt, int argc, char **argv)
{
    gen_opts_t o;
    TP_TRY(parse(argc, argv, &o));
    tp_config_t cfg;
    tp_model_t *m = NULL;
    tp_train_state_t *state = NULL;
    tp_status_t st = load_model(rt, &o, &cfg, &m, &state);
    tp_sampling_t s = {.temperature = (float)o.temperature, .top_k = o.top_k, .seed = o.seed};
    if (st == TP_OK) st = o.prompt ? one_prompt(rt, m, &o, &s) : many_prompts(rt, m, &o, &s);
    tp_train_state_free(state);
    tp_model_free(m);
    return st;
}

const tp_cli_cmd_t tp_cmd_generate = {
    .name = "generate",
    .summary = "generate text from a GPT checkpoint (KV cache, streaming)",
    .usage =
        "usage: tulpar generate --checkpoint PATH --prompt TEXT [options]\n"
        "       tulpar generate --checkpoint PATH --prompts FILE [--output FILE.jsonl] [options]\n"
        "\n"
        "Generate text with a byte-level GPT checkpoint (its config is read from the file).\n"
        "--prompt streams the continuation to stdout as it is produced; --prompts takes one\n"
        "prompt per line, spreads them over the ranks and writes JSON lines (index, prompt,\n"
        "completion) to --output or stdout, with the aggregate tokens/s on stderr.\n"
        "\n"
        "options:\n"
        "  --max-tokens N       tokens to generate (default 200)\n"
        "  --temperature T      0 = greedy; default 0.8\n"
        "  --top-k K            sample among the K most likely (default 40; 0 = all)\n"
        "  --seed S             sampling seed (default 1)\n"
        "  --set section.key=v  override a key of the checkpoint's config (e.g.\n"
        "                       runtime.threads=2)\n",
    .needs_runtime = true,
    .run = run_generate,
};
