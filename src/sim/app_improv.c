/* work in progress */
#include "sim_app.h"
