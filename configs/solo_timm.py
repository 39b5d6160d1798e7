# SOLO with a timm backbone on COCO, as a user would run it on a GPU box:
#   python train.py --config configs/solo_timm.py --gpus 4
# The model zoo config is inherited from the installed mmdet ('mmdet::' base);
# only the backbone changes. The neck's in_channels='auto' is filled from the
# backbone's feature_info, so swapping model_name needs no other edit.
_base_ = 'mmdet::solo/solo_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['lit_mmdet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='TIMMBackbone',
        model_name='tv_resnet50',
        pretrained=True,  # needs hub access; or checkpoint_path='/path/to/weights.pth'
        out_indices=(1, 2, 3, 4)),
    neck=dict(in_channels='auto'))
