/* Learning-rate schedule: linear warm-up, then cosine decay to min_lr (or constant). */
#include "optim.h"

#include <math.h>
#include <string.h>

double tp_lr_at(const tp_config_t *cfg, int64_t step, int64_t total)
{
    double lr = cfg->lr, min_lr = cfg->min_lr;
    if (cfg->warmup_steps > 0 && step < cfg->warmup_steps)
        return lr * (double)(step + 1) / (double)cfg->warmup_steps;
    if (strcmp(cfg->schedule, "constant") == 0) return lr;
    int64_t decay_steps = total - cfg->warmup_steps;
    if (decay_steps <= 0) return lr;
    double progress = (double)(step - cfg->warmup_steps) / (double)decay_steps;
    if (progress > 1.0) progress = 1.0;
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * progress));
}
