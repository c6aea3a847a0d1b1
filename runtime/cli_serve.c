/* `tulpar eval` and `tulpar infer`: load a checkpoint's parameters into the model described by
 * CONFIG and evaluate or classify a data set, data-parallel over the ranks. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "evaluate.h"
#include "json_writer.h"
#include "task.h"
#include "train_state.h"
#include "trainer.h"

typedef struct serve_opts {
    const char *config, *checkpoint, *output, *split;
    const char *sets[TP_CLI_MAX_SETS];
    int n_sets;
} serve_opts_t;

static tp_status_t parse(const char *cmd, int argc, char **argv, serve_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->split = "test";
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], **dst = NULL;
        if (tp_cli_is(arg, "--checkpoint"))
            dst = &o->checkpoint;
        else if (tp_cli_is(arg, "--output"))
            dst = &o->output;
        else if (tp_cli_is(arg, "--split"))
            dst = &o->split;
        if (dst) {
            if (!(*dst = tp_cli_value(argc, argv, &i,
                                      arg[2] == 'c'   ? "--checkpoint"
                                      : arg[2] == 'o' ? "--output"
                                                      : "--split")))
                return TP_ERR_USAGE;
        } else if (tp_cli_is(arg, "--set")) {
            const char *v = tp_cli_value(argc, argv, &i, "--set");
            if (!v) return TP_ERR_USAGE;
            if (o->n_sets == TP_CLI_MAX_SETS) return tp_cli_usage_error(cmd, "too many --set");
            o->sets[o->n_sets++] = v;
        } else if (arg[0] == '-' && arg[1]) {
            return tp_cli_usage_error(cmd, "unknown option '%s'", arg);
        } else if (!o->config) {
            o->config = arg;
        } else {
            return tp_cli_usage_error(cmd, "unexpected argument '%s'", arg);
        }
    }
    if (!o->config) return tp_cli_usage_error(cmd, "missing CONFIG file");
    if (!o->checkpoint) return tp_cli_usage_error(cmd, "missing --checkpoint PATH");
    if (strcmp(o->split, "test") != 0 && strcmp(o->split, "train") != 0)
        return tp_cli_usage_error(cmd, "--split must be test or train, got '%s'", o->split);
    return TP_OK;
}

typedef struct served {
    tp_config_t cfg;
    tp_task_t *task;  /* eval */
    tp_dataset_t *ds; /* infer (images) */
    tp_model_t *model;
    tp_train_state_t *state;
} served_t;

static void served_release(served_t *s)
{
    tp_train_state_free(s->state);
    tp_model_free(s->model);
    tp_task_free(s->task);
    tp_dataset_free(s->ds);
}

/* Forward batch: eval.batch images, or the training micro-batch of sequences for language
 * models (whose activations grow with the context). */
static int64_t serve_batch(const tp_config_t *cfg, int world)
{
    if (strcmp(cfg->dataset, "tokens") != 0) return cfg->eval_batch;
    int64_t b = cfg->batch / ((int64_t)world * cfg->grad_accum);
    return b > 0 ? b : 1;
}

static tp_status_t setup(tp_runtime_t *rt, const serve_opts_t *o, served_t *s, bool infer)
{
    memset(s, 0, sizeof *s);
    TP_TRY(tp_cli_load_config(rt, o->config, o->sets, o->n_sets, &s->cfg));
    tp_comm_t *comm = rt->comm;
    if (infer && strcmp(s->cfg.dataset, "tokens") == 0)
        return tp_cli_usage_error("infer", "classifies images; for language models use "
                                           "`tulpar generate`");
    TP_TRY(tp_comm_agree(comm, tp_runtime_open_backend(rt, &s->cfg)));
    bool on_train = strcmp(o->split, "train") == 0;
    int64_t B = serve_batch(&s->cfg, rt->world_size), c = 1, h = 1, w = 1, classes = 0;
    if (infer) {
        TP_TRY(tp_comm_agree(comm, tp_load_dataset(&s->cfg, on_train ? "train" : "t10k", &s->ds)));
        h = s->ds->rows;
        w = s->ds->cols;
        classes = s->ds->n_classes;
    } else {
        TP_TRY(tp_comm_agree(comm, tp_task_create(&s->cfg, false, true, on_train, B, &s->task)));
        c = s->task->c;
        h = s->task->h;
        w = s->task->w;
        classes = s->task->n_classes;
    }
    tp_status_t st = tp_model_create(&s->cfg, rt->be, c, h, w, classes, B, 1, &s->model);
    if (st == TP_OK) st = tp_train_state_create(s->model, NULL, &s->state);
    TP_TRY(tp_comm_agree(comm, st));
    tp_ckpt_meta_t meta;
    TP_TRY(tp_comm_agree(comm, tp_train_state_load(s->state, o->checkpoint, &meta)));
    tp_log_info("loaded %s (step %lld, %s, %lld parameters); %s split", o->checkpoint,
                (long long)meta.step, meta.model_type, (long long)s->model->numel, o->split);
    return TP_OK;
}

static tp_status_t write_eval_json(const char *path, const serve_opts_t *o,
                                   const tp_eval_result_t *r, int world)
{
    FILE *f = fopen(path, "w");
    if (!f) return TP_ERR(TP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    tp_json_t j;
    tp_json_init(&j, f, true);
    tp_json_object_begin(&j, NULL);
    tp_json_str(&j, "checkpoint", o->checkpoint);
    tp_json_str(&j, "split", o->split);
    tp_json_int(&j, "examples", r->n);
    tp_json_num(&j, "loss", r->loss);
    tp_json_num(&j, "accuracy", r->accuracy);
    tp_json_int(&j, "targets", r->targets);
    tp_json_num(&j, "bits_per_token", r->bits_per_token);
    if (r->byte_level) tp_json_num(&j, "bits_per_byte", r->bits_per_token);
    tp_json_num(&j, "seconds", r->seconds);
    tp_json_num(&j, "examples_per_s", r->seconds > 0 ? (double)r->n / r->seconds : 0);
    tp_json_int(&j, "world_size", world);
    tp_json_object_end(&j);
    if (fclose(f) != 0) return TP_ERR(TP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return TP_OK;
}

static int run_eval(tp_runtime_t *rt, int argc, char **argv)
{
    serve_opts_t o;
    TP_TRY(parse("eval", argc, argv, &o));
    served_t s;
    tp_status_t st = setup(rt, &o, &s, false);
    tp_eval_result_t r = {0};
    if (st == TP_OK)
        st = s.task->ops->evaluate(s.task, s.model, rt->comm, s.cfg.eval_max_batches, &r);
    if (st == TP_OK && rt->rank == 0) {
        if (isnan(r.accuracy))
            printf("eval: %s split, %lld tokens, loss %.4f, %.4f bits per %s, %.0f tokens/s\n",
                   o.split, (long long)r.targets, r.loss, r.bits_per_token,
                   r.byte_level ? "byte" : "token", (double)r.targets / r.seconds);
        else
            printf("eval: %s split, %lld examples, loss %.4f, accuracy %.4f, %.0f examples/s\n",
                   o.split, (long long)r.n, r.loss, r.accuracy, (double)r.n / r.seconds);
        char path[4096];
        if (o.output)
            snprintf(path, sizeof path, "%s", o.output);
        else
            snprintf(path, sizeof path, "%s.eval.json", o.checkpoint);
        st = write_eval_json(path, &o, &r, rt->world_size);
        if (st == TP_OK) printf("eval: wrote %s\n", path);
    }
    if (st != TP_ERR_MPI) st = tp_comm_agree(rt->comm, st);
    served_release(&s);
    return st;
}

static tp_status_t write_csv(const char *path, const int32_t *pred, const float *prob, int64_t n)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return TP_ERR(TP_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "index,predicted_class,probability\n");
    for (int64_t i = 0; i < n; i++)
        fprintf(f, "%lld,%d,%.6f\n", (long long)i, pred[i], prob[i]);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return TP_ERR(TP_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return TP_OK;
}

static int run_infer(tp_runtime_t *rt, int argc, char **argv)
{
    serve_opts_t o;
    TP_TRY(parse("infer", argc, argv, &o));
    if (!o.output) return tp_cli_usage_error("infer", "missing --output FILE.csv");
    served_t s;
    tp_status_t st = setup(rt, &o, &s, true);
    int32_t *pred = NULL;
    float *prob = NULL;
    tp_eval_result_t r = {0};
    if (st == TP_OK) {
        pred = tp_malloc((size_t)s.ds->n * sizeof(int32_t), "predictions");
        prob = tp_malloc((size_t)s.ds->n * sizeof(float), "probabilities");
        st = tp_comm_agree(rt->comm, pred && prob ? TP_OK : TP_ERR_NOMEM);
    }
    if (st == TP_OK) st = tp_classify(s.model, s.ds, rt->comm, pred, prob, &r);
    if (st == TP_OK && rt->rank == 0) {
        st = write_csv(o.output, pred, prob, s.ds->n);
        if (st == TP_OK)
            printf("infer: classified %lld images in %.3f s: %.0f images/s on %d rank(s) "
                   "(accuracy %.4f) -> %s\n",
                   (long long)r.n, r.seconds, (double)r.n / r.seconds, rt->world_size, r.accuracy,
                   o.output);
    }
    if (st != TP_ERR_MPI && s.ds) st = tp_comm_agree(rt->comm, st);
    free(pred);
    free(prob);
    served_release(&s);
    return st;
}

const tp_cli_cmd_t tp_cmd_eval = {
    .name = "eval",
    .summary = "evaluate a checkpoint (loss, accuracy), data-parallel",
    .usage =
        "usage: tulpar eval CONFIG --checkpoint PATH [--split test|train] [--output FILE.json]\n"
        "                   [--set section.key=value]...\n"
        "\n"
        "Evaluate the checkpoint's parameters on a data split (default test), sharded over\n"
        "the ranks. Prints loss and accuracy and writes them as JSON to --output (default\n"
        "PATH.eval.json).\n",
    .needs_runtime = true,
    .run = run_eval,
};

const tp_cli_cmd_t tp_cmd_infer = {
    .name = "infer",
    .summary = "batch classification of a data set into a CSV file",
    .usage = "usage: tulpar infer CONFIG --checkpoint PATH --output FILE.csv [--split test|train]\n"
             "                    [--set section.key=value]...\n"
             "\n"
             "Classify every image of the split (default test), sharded over the ranks. Rank 0\n"
             "writes FILE.csv with columns index,predicted_class,probability and reports\n"
             "images/s.\n",
    .needs_runtime = true,
    .run = run_infer,
};
