/* admin_json.h — building the admin port's JSON answers: each helper
 * records an allocation failure in *oom and does nothing when the parent is
 * missing, so a handler checks once. Shared by the admin port's files. */
#ifndef CG_ADMIN_JSON_H
#define CG_ADMIN_JSON_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

static inline void put_u64(bool *oom, cJSON *o, const char *key, uint64_t v)
{
    /* Raw digits: counters stay exact past 2^53, where a double would not. */
    char num[24];
    snprintf(num, sizeof(num), "%" PRIu64, v);
    if (cJSON_AddRawToObject(o, key, num) == NULL)
        *oom = true;
}

/* A string, or null when v is NULL. */
static inline void put_str(bool *oom, cJSON *o, const char *key, const char *v)
{
    if ((v != NULL ? cJSON_AddStringToObject(o, key, v) : cJSON_AddNullToObject(o, key)) == NULL)
        *oom = true;
}

static inline void put_bool(bool *oom, cJSON *o, const char *key, bool v)
{
    if (cJSON_AddBoolToObject(o, key, v) == NULL)
        *oom = true;
}

static inline cJSON *put_obj(bool *oom, cJSON *o, const char *key)
{
    cJSON *child = cJSON_AddObjectToObject(o, key);
    if (child == NULL)
        *oom = true;
    return child;
}

static inline cJSON *put_arr(bool *oom, cJSON *o, const char *key)
{
    cJSON *child = cJSON_AddArrayToObject(o, key);
    if (child == NULL)
        *oom = true;
    return child;
}

/* A new object appended to array arr. */
static inline cJSON *push_obj(bool *oom, cJSON *arr)
{
    cJSON *item = cJSON_CreateObject();
    if (item != NULL && arr != NULL && cJSON_AddItemToArray(arr, item))
        return item;
    cJSON_Delete(item);
    *oom = true;
    return NULL;
}

static inline void push_str(bool *oom, cJSON *arr, const char *v)
{
    cJSON *item = cJSON_CreateString(v);
    if (item != NULL && arr != NULL && cJSON_AddItemToArray(arr, item))
        return;
    cJSON_Delete(item);
    *oom = true;
}


#endif /* CG_ADMIN_JSON_H */
